"""A WebRTC endpoint's leg on the node: its DTLS-SRTP, payload types and send slots.

A browser or any WebRTC stack joins with an SDP offer (``cloud.webrtc``); the
cloud answers for the node and allocates a leg with :class:`WebRtcLegParams`.
What differs from a Pinhole leg, and lives here:

- Keys. The leg has no keys until the endpoint's DTLS handshake with the node
  completes (RFC 5764 §4.2, the node is the DTLS server: RFC 8842 §5.1,
  ``a=setup:passive``); the endpoint's certificate must be the one its offer
  named (RFC 8122 §5, RFC 8827 §6.5). Until then the leg neither sends nor
  receives media (``dtls_pending``).
- Payload types. The endpoint chose its own numbers (RFC 3264 §6.1); its RTP
  is mapped onto the meeting's (``wire.payload_types``) on the way in and back
  on the way out; a codec it did not negotiate is never sent to it (``codec``).
- SSRCs. It sends the SSRCs its offer signalled (RFC 5576), and only those
  (``ssrc``). It receives on the streams the answer signalled: one *slot* per
  stream, each carrying one other participant's audio or video at a time, the
  SSRC rewritten to the slot's (a media translator, RFC 7667). A source
  takes a free slot of its kind, or the one idle longest once it has been idle
  :data:`SLOT_IDLE_S`; with none, its packets are dropped (``no_slot``).
  docs/design.md "WebRTC legs" says why slots, not renegotiation.
- RTCP. Feedback the endpoint sends about a slot (NACK, PLI, FIR: RFC 4585,
  RFC 5104) goes to the sender of the slot's source, renamed to that source;
  the rest of its RTCP (SR, RR, SDES, REMB) ends at the node.

Everything here is per packet and never raises for a packet's content.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from wire.dtls import DtlsSrtp, DtlsState
from wire.errors import RtpError
from wire.models import WebRtcLegParams
from wire.payload_types import BY_PAYLOAD_TYPE
from wire.rtp import RTP_HEADER_LENGTH, rewrite_rtp

#: seconds a slot's source may be silent before another source may take the slot
SLOT_IDLE_S: Final = 5.0


@dataclass(slots=True)
class Slot:
    """A stream the node sends the endpoint: its SSRC, kind, and the source it carries."""

    ssrc: int
    kind: str
    source: bytes | None = None  # the source's SSRC as on the wire
    used_at: float = 0.0


class WebRtcLeg:
    """One WebRTC endpoint's leg state beside its :class:`media_node.legs.Leg`."""

    def __init__(self, dtls: DtlsSrtp, params: WebRtcLegParams) -> None:
        self.dtls = dtls
        #: set once the DTLS keys are in the leg's SRTP sessions
        self.keyed = False
        self.ssrcs = frozenset(s.to_bytes(4, "big") for s in params.ssrcs)
        self._to_meeting = {m.leg: m.meeting for m in params.payload_types}
        self._to_leg = {m.meeting: m.leg for m in params.payload_types}
        self.slots = [Slot(s.ssrc, s.kind) for s in params.slots]
        self._by_source: dict[bytes, Slot] = {}
        self._by_ssrc = {slot.ssrc: slot for slot in self.slots}

    @property
    def failed(self) -> bool:
        return self.dtls.state is DtlsState.FAILED

    def to_meeting(self, clear: bytes) -> bytes | None:
        """The endpoint's clear RTP packet with the meeting's payload type, or ``None``
        for a payload type it did not negotiate."""
        if len(clear) < RTP_HEADER_LENGTH:
            return None
        meeting = self._to_meeting.get(clear[1] & 0x7F)
        if meeting is None:
            return None
        if meeting == clear[1] & 0x7F:
            return clear
        out = bytearray(clear)
        out[1] = (out[1] & 0x80) | meeting
        return bytes(out)

    def for_endpoint(self, clear: bytes, now: float) -> tuple[bytes | None, str]:
        """A clear packet of the meeting made into one of this endpoint's streams: its
        payload type, the SSRC of the slot its source holds. ``(None, reason)`` when it
        cannot be sent: ``codec`` (not negotiated) or ``no_slot``."""
        try:
            meeting_pt = clear[1] & 0x7F
            source = clear[8:12]
            if len(source) != 4:
                return None, "codec"
            leg_pt = self._to_leg.get(meeting_pt)
            codec = BY_PAYLOAD_TYPE.get(meeting_pt)
            if leg_pt is None or codec is None:
                return None, "codec"
            slot = self._slot(source, codec.kind, now)
            if slot is None:
                return None, "no_slot"
            return rewrite_rtp(clear, payload_type=leg_pt, ssrc=slot.ssrc), ""
        except (IndexError, RtpError):
            return None, "codec"

    def _slot(self, source: bytes, kind: str, now: float) -> Slot | None:
        slot = self._by_source.get(source)
        if slot is not None and slot.kind == kind:
            slot.used_at = now
            return slot
        free = [s for s in self.slots if s.kind == kind
                and (s.source is None or now - s.used_at >= SLOT_IDLE_S)]
        if not free:
            return None
        slot = min(free, key=lambda s: (s.source is not None, s.used_at))
        if slot.source is not None:
            self._by_source.pop(slot.source, None)
        slot.source, slot.used_at = source, now
        self._by_source[source] = slot
        return slot

    def source_of(self, slot_ssrc: int) -> bytes | None:
        """The source (wire SSRC) the slot ``slot_ssrc`` carries now, if any."""
        slot = self._by_ssrc.get(slot_ssrc)
        return None if slot is None else slot.source

    def forget_source(self, source: bytes) -> None:
        """A source left the meeting: its slot is free at once."""
        slot = self._by_source.pop(source, None)
        if slot is not None:
            slot.source = None
