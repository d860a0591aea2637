"""The relay engine: legs, latching, consent and SFU forwarding, independent of sockets.

Listeners hand every packet to :meth:`Engine.on_packet` with the :class:`Sink`
it came in on and the source address; the engine answers STUN, latches legs
and forwards SRTP through the sinks. It never reads a clock: the caller passes
``now`` (docs/design.md, "Code conventions"), so tests drive consent and timeouts with a fake one.

- STUN (RFC 7983 §7: first byte 0-3) goes to ``wire.stun.validate_request``.
  A discovery probe gets XOR-MAPPED-ADDRESS + SOFTWARE naming the node; a
  Binding Request authenticated with a leg's ``pwd`` is a check of the leg's
  ICE-lite agent (``wire.ice_lite``, RFC 8445 §7.3.2): the leg is latched to
  the pair it selects, the packet's 5-tuple (UDP) or connection (TCP/TLS),
  whose consent it refreshes (RFC 7675). Once the client has nominated a pair
  (USE-CANDIDATE) a check on another pair is answered but moves nothing; before
  that, the latest authenticated check latches. Nothing else ever moves a
  latch (docs/design.md "Media leg").
- SRTP/SRTCP (first byte 128-191) from a latched path, its SSRC the sender leg's
  (checked before decryption, so the leg's libsrtp session keeps streams for its
  own SSRCs only), is authenticated and decrypted with the sender leg's inbound
  context (RFC 3711 §3.3: a packet whose tag fails is discarded), then re-protected
  with every other leg's outbound context and sent where that leg is latched:
  symmetric media.
- Cascade legs join two nodes of one meeting (docs/design.md: "cascade legs").
  A packet from a local participant goes to every other leg, cascades
  included; a packet that arrived over a cascade goes to local participants
  only. With the cloud cascading every pair of nodes in a meeting (a full
  mesh) every participant gets every packet exactly once, and nothing loops.
- A latch moves only for its owner: a path latched to a leg whose consent is
  fresh is never taken by another leg (a spoofed source that authenticates its
  own leg with a victim's address is refused and counted, ``latch_taken``),
  and a Binding Request whose transaction id this leg has already seen from
  another path is a replay (RFC 8489 §9.1 gives no replay protection of
  its own): refused and counted, ``stun_replay``. A retransmission on the
  same path is answered again.
- Unauthenticated STUN is rate-limited per flow under a per-IP ceiling (an
  office behind one NAT address still probes) and its answers are at
  most twice the request's size (no reflection amplification).
- DTLS (first byte 20-63, RFC 7983 §7) from a WebRTC leg's latched path goes to
  its DTLS-SRTP server (``wire.dtls``); once the handshake is through, the keys
  it exported become the leg's SRTP sessions. A meeting with a WebRTC leg is
  relayed here, not by the data plane: its packets are translated per receiver
  (payload types, SSRC slots, feedback: ``media_node.webrtc``).
- Content (screen sharing) legs are allocated with ``content``: a meeting's content
  legs relay among themselves (:attr:`Leg.group`), never into its audio/video legs,
  with the same latch, consent, SSRC and SRTP checks as any leg. The node enforces
  the floor: a content leg's RTP is relayed only from the participant the cloud
  said holds it (:meth:`Engine.set_floor`); anyone else's is dropped and counted,
  ``not_presenter`` (its RTCP, a receiver's reports, still passes).
- Everything else is dropped and counted by reason; nothing raises per packet.
- The engine is the control plane of a UDP data plane (:mod:`media_node.plane`:
  compiled, or its Python twin): every change to a meeting is replanned there, and
  a sender whose meeting is all on UDP is relayed by the plane with the same
  sessions and checks as :meth:`Engine.on_packet`; its counts are settled into
  the legs before anything reads them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal

from media_node.legs import CONTENT_GROUP, Leg, Sink
from media_node.plane import Plane, load_plane
from media_node.ratelimit import SourceLimiter
from media_node.webrtc import WebRtcLeg
from wire.address import Address
from wire.dtls import DtlsCertificate, DtlsRole, DtlsSrtp, DtlsState, Fingerprint
from wire.errors import DtlsError, RtpError, SrtpError
from wire.ice_lite import (
    NO_ICE_ATTRIBUTES,
    IceLite,
    local_priority,
    read_check_attributes,
)
from wire.models import AllocateLeg, LegAllocated, LegCounters, LegEvent, OpenCascade
from wire.multiplex import DTLS, RTCP_PACKET_TYPES, RTP_RTCP, STUN_FIRST
from wire.rtp import feedback_target, retarget_feedback, split_rtcp
from wire.srtp import SrtpKeys, SrtpProfile, SrtpReceiver, SrtpSender
from wire.stun import (
    Verdict,
    build_discovery_response,
    build_leg_binding_response,
    validate_request,
)

log = logging.getLogger(__name__)

STUN_END: Final = STUN_FIRST.stop
RTP_START: Final = RTP_RTCP.start
RTP_END: Final = RTP_RTCP.stop
DTLS_START: Final = DTLS.start
DTLS_END: Final = DTLS.stop
#: Transaction ids remembered per leg: with a keepalive every ~5 s (RFC 7675
#: §5.1) this covers the last twenty minutes; memory stays bounded per leg.
SEEN_TRANSACTIONS: Final = 256
#: a leg's counters that the node also totals
TOTALS: Final = ("packets_in", "bytes_in", "packets_out", "bytes_out")
#: SSRCs besides its own that a leg's SRTCP may come from, learnt as they authenticate:
#: an endpoint's receive-only sections report from SSRCs its offer need not list (RFC
#: 3550 §6.4.2). Past them, an SRTCP packet from another SSRC is dropped before libsrtp
#: would keep a stream for it.
RTCP_SSRCS: Final = 16


class Engine:
    """Every leg of this node and the packet path between them."""

    def __init__(
        self,
        node_id: str,
        *,
        capacity: int = 1000,
        consent_s: float = 30.0,
        leg_timeout_s: float = 90.0,
        emit: Callable[[LegEvent], None] | None = None,
        stun_rate: float = 20.0,
        stun_burst: float = 40.0,
        stun_ip_rate: float = 1000.0,
        stun_ip_burst: float = 4000.0,
        plane: Plane | None = None,
        certificate: DtlsCertificate | None = None,
    ) -> None:
        self.node_id: Final = node_id  # known before the listeners start; never renamed
        self.capacity = capacity
        self.consent_s = consent_s
        self.leg_timeout_s = leg_timeout_s
        self.emit = emit or (lambda event: None)
        self.limiter = SourceLimiter(stun_rate, stun_burst, stun_ip_rate, stun_ip_burst)
        self.legs: dict[str, Leg] = {}
        self._by_ufrag: dict[str, Leg] = {}
        # latched legs by path: sink, then address (a packet looks up its sink's table:
        # no (sink, address) key to build and hash per packet; a closed connection's
        # legs are its table)
        self._paths: dict[Sink, dict[Any, Leg]] = {}
        self._meetings: dict[str, list[Leg]] = {}
        #: meetings with a WebRTC leg: their packets are translated per receiver (kept at
        #: set-up, so a packet asks one set, not every member)
        self._translated: set[str] = set()
        #: the data plane: compiled or Python (``media_node.plane.load_plane``)
        self.plane: Plane = plane if plane is not None else load_plane()
        #: the node's DTLS certificate: WebRTC legs need one (its fingerprint is in the
        #: node list, and so in every SDP answer for this node)
        self.certificate = certificate
        self._drops: dict[str, int] = {}
        self.stun_answers: dict[str, int] = {}
        # packets and octets of released legs; the live legs' are summed when read, so a
        # packet updates its legs' counters only
        self._retired = dict.fromkeys(TOTALS, 0)
        self._retired_content = dict.fromkeys(TOTALS, 0)  # of released content legs
        #: who presents in each meeting that has legs here, as the cloud said
        #: (``set_floor``): a content leg's RTP is relayed from that participant only
        self._floors: dict[str, str] = {}

    def settle(self) -> None:
        """Move what the data plane counted into the legs and the node's drops."""
        for counted in self.plane.settle():
            leg = counted.leg
            leg.packets_in += counted.packets_in
            leg.bytes_in += counted.bytes_in
            leg.packets_out += counted.packets_out
            leg.bytes_out += counted.bytes_out
            for reason, n in counted.drops.items():
                self._drops[reason] = self._drops.get(reason, 0) + n
                leg.drops[reason] = leg.drops.get(reason, 0) + n
        errors = self.plane.udp_errors()
        if errors:
            self._drops["udp_error"] = self._drops.get("udp_error", 0) + errors

    @property
    def drops(self) -> dict[str, int]:
        """Packets dropped, by reason, the data plane's included."""
        self.settle()
        return self._drops

    def _total(self, name: str) -> int:
        self.settle()
        live: int = sum(getattr(leg, name) for leg in self.legs.values())
        return self._retired[name] + live

    def content_total(self, name: str) -> int:
        """A total of content legs only (``bytes_in``, ``bytes_out`` …): screen sharing."""
        self.settle()
        live: int = sum(getattr(leg, name) for leg in self.legs.values() if leg.content)
        return self._retired_content[name] + live

    @property
    def packets_in(self) -> int:
        return self._total("packets_in")

    @property
    def bytes_in(self) -> int:
        return self._total("bytes_in")

    @property
    def packets_out(self) -> int:
        return self._total("packets_out")

    @property
    def bytes_out(self) -> int:
        return self._total("bytes_out")

    # ------------------------------------------------------------- legs

    def allocate(self, command: AllocateLeg, now: float) -> LegAllocated:
        """Create the leg the cloud asked for (idempotent for a repeated leg id)."""
        answer = LegAllocated(request_id=command.request_id, leg_id=command.leg_id)
        if command.leg_id in self.legs:
            return answer
        if len(self.legs) >= self.capacity:
            return answer.model_copy(update={"ok": False, "detail": "node is full"})
        if command.ice.node_ufrag in self._by_ufrag:
            return answer.model_copy(update={"ok": False, "detail": "node ufrag already in use"})
        webrtc: WebRtcLeg | None = None
        try:
            if command.webrtc is not None:
                if self.certificate is None:
                    return answer.model_copy(update={
                        "ok": False, "detail": "this node has no DTLS certificate"})
                members = self._meetings.get(command.meeting_id, ())
                if any(m.sends(s.to_bytes(4, "big")) for m in members
                       for s in command.webrtc.ssrcs):
                    # its stream would pass for another participant's (RFC 3550 §8.2)
                    return answer.model_copy(update={
                        "ok": False, "detail": "an SSRC of the offer is another participant's"})
                remote = Fingerprint.parse(command.webrtc.fingerprint)
                webrtc = WebRtcLeg(DtlsSrtp(self.certificate, DtlsRole.SERVER, remote),
                                   command.webrtc)
                # no keys before the DTLS handshake: sessions nobody holds the keys of
                inbound = SrtpReceiver(SrtpKeys.generate())
                outbound = SrtpSender(SrtpKeys.generate())
            else:
                assert command.srtp is not None  # AllocateLeg: srtp or webrtc
                profile = SrtpProfile(command.srtp.profile)
                inbound = SrtpReceiver(SrtpKeys.from_b64(
                    profile, command.srtp.client_to_node.get_secret_value()))
                outbound = SrtpSender(SrtpKeys.from_b64(
                    profile, command.srtp.node_to_client.get_secret_value()))
        except DtlsError as exc:
            return answer.model_copy(update={"ok": False, "detail": f"bad DTLS fingerprint: {exc}"})
        except (SrtpError, ValueError) as exc:
            return answer.model_copy(update={"ok": False, "detail": f"bad SRTP keys: {exc}"})
        leg = Leg(
            leg_id=command.leg_id, meeting_id=command.meeting_id,
            participant_id=command.participant_id, ssrc=command.ssrc,
            node_ufrag=command.ice.node_ufrag, client_ufrag=command.ice.client_ufrag,
            pwd=command.ice.pwd.get_secret_value().encode(), inbound=inbound,
            outbound=outbound, created_at=now, cascade=command.cascade, webrtc=webrtc,
            content=command.content,
        )
        self._add(leg)
        log.info("leg %s allocated (meeting %s, ssrc %d%s)", leg.leg_id, leg.meeting_id,
                 leg.ssrc, ", cascade" if leg.cascade else ", content" if leg.content else "")
        return answer

    def _add(self, leg: Leg) -> None:
        leg.ice = IceLite(self.consent_s)
        self.legs[leg.leg_id] = leg
        if leg.node_ufrag:
            self._by_ufrag[leg.node_ufrag] = leg
        leg.members = self._meetings.setdefault(leg.group, [])
        leg.members.append(leg)
        if leg.webrtc is not None:
            self._translated.add(leg.group)

    def set_floor(self, meeting_id: str, presenter: str | None) -> bool:
        """The cloud says who holds ``meeting_id``'s content floor (``None``: nobody).

        Kept while the meeting has legs here (the cloud says it again before each
        content leg it allocates), so a node never holds floors of meetings it does not
        carry; False, and nothing kept, for a meeting without legs here.
        """
        if presenter is None:
            self._floors.pop(meeting_id, None)
            return True
        if meeting_id not in self._meetings and meeting_id + CONTENT_GROUP not in self._meetings:
            return False
        self._floors[meeting_id] = presenter
        return True

    def presenter(self, meeting_id: str) -> str | None:
        """Who this node relays content from in ``meeting_id``."""
        return self._floors.get(meeting_id)

    def add_outbound_cascade(self, command: OpenCascade, now: float) -> Leg:
        """The leg this node opens to a peer node: it is the peer's client, keys mirrored.

        Its path is set by :meth:`latch_outbound` once the peer has answered an
        authenticated Binding Request; it is never looked up by ufrag here. A leg id
        that names a participant's leg is refused (ValueError): a command never
        replaces a leg it did not create.
        """
        existing = self.legs.get(command.leg_id)
        if existing is not None and existing.node_ufrag:
            raise ValueError(f"leg id {command.leg_id} is a participant's leg on this node")
        profile = SrtpProfile(command.srtp.profile)
        leg = Leg(
            leg_id=command.leg_id, meeting_id=command.meeting_id,
            participant_id=f"cascade:{command.peer.id}", ssrc=0, node_ufrag="",
            client_ufrag=command.ice.client_ufrag,
            pwd=command.ice.pwd.get_secret_value().encode(),
            inbound=SrtpReceiver(SrtpKeys.from_b64(
                profile, command.srtp.node_to_client.get_secret_value())),
            outbound=SrtpSender(SrtpKeys.from_b64(
                profile, command.srtp.client_to_node.get_secret_value())),
            created_at=now, cascade=True, content=command.content,
        )
        self.release(leg.leg_id)
        self._add(leg)
        return leg

    def latch_outbound(self, leg: Leg, sink: Sink, addr: Any, now: float) -> None:
        """An outbound cascade got an authenticated answer on ``sink``: consent, path."""
        self._latch(leg, sink, addr, now)

    def release(self, leg_id: str) -> Leg | None:
        leg = self.legs.get(leg_id)
        if leg is None:
            return None
        self.settle()  # its last counts, before they are retired
        del self.legs[leg_id]
        self._by_ufrag.pop(leg.node_ufrag, None)
        if leg.sink is not None:
            self._unpath(leg.sink, leg.addr)
        for name in TOTALS:
            self._retired[name] += getattr(leg, name)
            if leg.content:
                self._retired_content[name] += getattr(leg, name)
        members = self._meetings.get(leg.group, [])
        if leg in members:
            members.remove(leg)
        for other in members:  # its streams' slots at WebRTC endpoints are free at once
            if other.webrtc is not None:
                for source in (leg.webrtc.ssrcs if leg.webrtc is not None else (leg.ssrc_wire,)):
                    other.webrtc.forget_source(source)
        self.plane.forget(leg, members)
        if not any(m.webrtc is not None for m in members):
            self._translated.discard(leg.group)
        if not members:
            self._meetings.pop(leg.group, None)
            if (leg.meeting_id not in self._meetings
                    and leg.meeting_id + CONTENT_GROUP not in self._meetings):
                self._floors.pop(leg.meeting_id, None)  # the meeting's last leg here
        log.info("leg %s freed", leg_id)
        return leg

    def sink_closed(self, sink: Sink) -> None:
        """A TCP/TLS connection ended: legs latched to it wait for a new latch."""
        for leg in self._paths.pop(sink, {}).values():
            leg.ice.forget((sink, leg.addr))
            leg.sink, leg.addr = None, None
            self.plane.replan(leg.members)

    def _path(self, sink: Sink, addr: Any) -> Leg | None:
        by_addr = self._paths.get(sink)
        return None if by_addr is None else by_addr.get(addr)

    def _unpath(self, sink: Sink, addr: Any) -> None:
        by_addr = self._paths.get(sink)
        if by_addr is not None:
            by_addr.pop(addr, None)
            if not by_addr:
                del self._paths[sink]

    def tick(self, now: float) -> None:
        """Consent expiry (RFC 7675 §5.1), leg timeouts and DTLS retransmissions; call
        about once a second."""
        self.settle()
        for leg in list(self.legs.values()):
            if leg.webrtc is not None and leg.sink is not None:
                timer = leg.webrtc.dtls.timer()
                if timer is not None and now >= timer:
                    for datagram in leg.webrtc.dtls.handle_timer(now):
                        leg.sink.send(datagram, leg.addr)
            last = leg.consent_at if leg.consent_at is not None else leg.created_at
            if now - last > self.leg_timeout_s:
                self.release(leg.leg_id)
                self.emit(LegEvent(leg_id=leg.leg_id, event="freed", counters=leg.counters()))
            elif (leg.consent_at is not None and not leg.consent_lost
                  and now - leg.consent_at > self.consent_s):
                leg.consent_lost = True
                self.plane.replan(leg.members)
                self.emit(LegEvent(leg_id=leg.leg_id, event="consent_expired", rung=leg.rung,
                                   counters=leg.counters()))

    # ------------------------------------------------------------- packets

    def drop(self, reason: str, leg: Leg | None = None) -> None:
        self._drops[reason] = self._drops.get(reason, 0) + 1
        if leg is not None:
            leg.drops[reason] = leg.drops.get(reason, 0) + 1

    def on_packet(self, data: bytes, sink: Sink, addr: Any, now: float) -> None:
        """One packet from ``addr`` on ``sink``. Never raises."""
        if not data:
            self.drop("demux")
            return
        first = data[0]
        if first < STUN_END:
            self._on_stun(data, sink, addr, now)
        elif RTP_START <= first < RTP_END:
            self._on_srtp(data, sink, addr, now)
        elif DTLS_START <= first < DTLS_END:
            self._on_dtls(data, sink, addr, now)
        else:
            self.drop("demux")

    def _lookup(self, node_ufrag: str) -> bytes | None:
        leg = self._by_ufrag.get(node_ufrag)
        return None if leg is None else leg.pwd

    def _on_stun(self, data: bytes, sink: Sink, addr: Any, now: float) -> None:
        result = validate_request(data, self._lookup, software=self.node_id)
        verdict = result.verdict
        if verdict is Verdict.IGNORED:
            self.drop("stun_" + result.reason)
            return
        if verdict is not Verdict.AUTHENTICATED and not self.limiter.allow(
                str(addr[0]), (sink.rung, addr[0], addr[1]), now):  # the flow: a 5-tuple
            self.drop("stun_rate")
            return
        if verdict is Verdict.REJECTED:
            self.drop("stun_" + result.reason)
            if result.reply is not None:
                self._answer(sink, addr, result.reply, "error")
            return
        assert result.transaction_id is not None
        mapped = Address(str(addr[0]), int(addr[1]))
        if verdict is Verdict.DISCOVERY:
            reply = build_discovery_response(result.transaction_id, mapped, self.node_id,
                                             max_length=2 * len(data))
            if reply is None:
                self.drop("stun_amplification")
            else:
                self._answer(sink, addr, reply, "discovery")
            return
        leg = self._by_ufrag.get(result.node_ufrag or "")
        if leg is None or result.client_ufrag != leg.client_ufrag:
            self.drop("stun_unknown_username")
            return
        if not self._owned_by(leg, result.transaction_id, sink, addr, now):
            return
        # ICE-lite (wire.ice_lite): the selected pair follows the controlling agent's
        # nomination; a check on another pair is answered, its consent noted, no more
        check = NO_ICE_ATTRIBUTES if result.message is None else read_check_attributes(data)
        if leg.ice.receive_check((sink, addr), check, local_priority(sink.rung), now).selected:
            self._latch(leg, sink, addr, now)
        reply = build_leg_binding_response(result.transaction_id, mapped, leg.pwd, self.node_id)
        self._answer(sink, addr, reply, "leg")

    def _answer(self, sink: Sink, addr: Any, reply: bytes, kind: str) -> None:
        self.stun_answers[kind] = self.stun_answers.get(kind, 0) + 1
        sink.send(reply, addr)

    def _fresh(self, leg: Leg, now: float) -> bool:
        """RFC 7675 §5.1: the leg's consent is younger than the consent time-out."""
        return leg.consent_at is not None and not leg.consent_lost \
            and now - leg.consent_at <= self.consent_s

    def _owned_by(self, leg: Leg, txid: bytes, sink: Sink, addr: Any, now: float) -> bool:
        """May this authenticated request latch ``leg`` to (sink, addr)? Counts refusals."""
        seen = leg.seen.get(txid)
        if seen is not None and (seen[0] is not sink or seen[1] != addr):
            self.drop("stun_replay", leg)  # the same request from another path: a replay
            return False
        holder = self._path(sink, addr)
        if holder is not None and holder is not leg and self._fresh(holder, now):
            self.drop("latch_taken", leg)  # the path belongs to a leg with fresh consent
            return False
        if seen is None:
            leg.seen[txid] = (sink, addr)
            if len(leg.seen) > SEEN_TRANSACTIONS:
                leg.seen.popitem(last=False)
        return True

    def _latch(self, leg: Leg, sink: Sink, addr: Any, now: float) -> None:
        leg.consent_at = now
        regained, leg.consent_lost = leg.consent_lost, False
        if leg.sink is sink and leg.addr == addr:
            if regained:
                self.plane.replan(leg.members)
            return
        event: Literal["latched", "relatched"] = "latched" if leg.sink is None else "relatched"
        if leg.sink is not None:
            self._unpath(leg.sink, leg.addr)
        displaced = self._path(sink, addr)
        if displaced is not None and displaced is not leg:
            displaced.ice.forget((sink, addr))
            displaced.sink, displaced.addr = None, None
            self.plane.replan(displaced.members)
        leg.sink, leg.addr = sink, addr
        self._paths.setdefault(sink, {})[addr] = leg
        self.plane.replan(leg.members)
        self.settle()  # the event carries the leg's counters
        log.info("leg %s %s on %s from %s", leg.leg_id, event, sink.rung, addr)
        self.emit(LegEvent(leg_id=leg.leg_id, event=event, rung=leg.rung,
                           counters=leg.counters()))

    def _on_dtls(self, data: bytes, sink: Sink, addr: Any, now: float) -> None:
        """A DTLS record (RFC 7983 §7) on a WebRTC leg's selected pair (RFC 8445 §12.1)."""
        leg = self._path(sink, addr)
        if leg is None:
            self.drop("unlatched")
            return
        webrtc = leg.webrtc
        if webrtc is None:
            self.drop("dtls_unexpected", leg)
            return
        dtls = webrtc.dtls
        if dtls.state is DtlsState.FAILED:
            self.drop("dtls_failed", leg)
            return
        for datagram in dtls.receive(data, now):
            sink.send(datagram, addr)
        state: DtlsState = dtls.state  # receive() moved it
        if state is DtlsState.CONNECTED and not webrtc.keyed:
            keys = dtls.keys
            assert keys is not None  # CONNECTED: exported
            leg.inbound = SrtpReceiver(keys.remote)
            leg.outbound = SrtpSender(keys.local)
            webrtc.keyed = True
            log.info("leg %s: DTLS-SRTP keys in place (%s)", leg.leg_id, keys.profile.value)
            self.plane.replan(leg.members)
        elif state is DtlsState.FAILED:
            reason = dtls.failure.reason if dtls.failure is not None else "error"
            self.drop("dtls_" + reason, leg)
            log.info("leg %s: DTLS failed (%s)", leg.leg_id, dtls.failure)

    def _on_srtp(self, data: bytes, sink: Sink, addr: Any, now: float) -> None:
        by_addr = self._paths.get(sink)
        leg = None if by_addr is None else by_addr.get(addr)
        if leg is None:
            self.drop("unlatched")
            return
        if leg.webrtc is not None and not leg.webrtc.keyed:
            self.drop("dtls_pending", leg)
            return
        rtcp = len(data) > 1 and data[1] in RTCP_PACKET_TYPES  # RFC 5761 §4 (multiplex.is_rtcp)
        members = leg.members
        # The SSRC before libsrtp sees the packet: a session that takes any SSRC keeps a
        # stream for each one it authenticates, for ever, so a participant with keys could
        # grow it without bound. The header is authenticated, never encrypted (RFC 3711
        # §3.1): one that passes here and fails the tag is dropped below. (Shorter than a
        # header: libsrtp refuses it, ``error``.)
        learnt = b""
        if rtcp and len(data) >= 8:
            ssrc = data[4:8]  # the first packet's sender (RFC 3550 §6.4.1; RFC 3711 §3.4)
            if not leg.cascade and not leg.sends(ssrc) and ssrc not in leg.rtcp_ssrcs:
                if len(leg.rtcp_ssrcs) >= RTCP_SSRCS:
                    self.drop("ssrc", leg)
                    return
                learnt = ssrc
        elif not rtcp and len(data) >= 12:
            ssrc = data[8:12]
            if leg.cascade:  # many SSRCs, but never one of this node's own participants
                if _participant_ssrc(members, ssrc):
                    self.drop("ssrc", leg)
                    return
            elif not leg.sends(ssrc):
                # SSRCs are assigned by the cloud (docs/design.md "SRTP"), or signalled in a
                # WebRTC endpoint's offer (RFC 5576)
                self.drop("ssrc", leg)
                return
            elif leg.content and self._floors.get(leg.meeting_id) != leg.participant_id:
                # one presenter at a time, as the cloud holds the floor (docs/design.md
                # "Content"): a participant who lost it, or never had it, is not relayed
                self.drop("not_presenter", leg)
                return
        inbound = leg.inbound
        try:  # the clear packet stays in the inbound session's buffer (wire.srtp: open/seal)
            inbound.open_rtcp(data) if rtcp else inbound.open(data)
        except SrtpError as exc:
            self.drop(exc.reason, leg)
            return
        if learnt:
            leg.rtcp_ssrcs.add(learnt)
        leg.packets_in += 1
        leg.bytes_in += len(data)
        if leg.group in self._translated:
            self._translate(leg, rtcp, now)
            return
        from_cascade = leg.cascade
        # Each receiver but the last protects a copy of the clear packet; the last one
        # seals it where it lies, so a meeting of 2 copies no clear bytes at all.
        last: Leg | None = None
        clear = b""
        for other in members:
            if other is leg or other.sink is None or (from_cascade and other.cascade):
                continue
            if other.consent_lost:
                self.drop("no_consent", other)
                continue
            if last is not None:
                clear = clear or inbound.opened()
                try:
                    out = (last.outbound.protect_rtcp(clear) if rtcp
                           else last.outbound.protect(clear))
                except SrtpError as exc:
                    self.drop("protect_" + exc.reason, last)
                else:
                    self._deliver(last, out)
            last = other
        if last is None:
            return
        try:
            out = last.outbound.seal_rtcp(inbound) if rtcp else last.outbound.seal(inbound)
        except SrtpError as exc:
            self.drop("protect_" + exc.reason, last)
            return
        self._deliver(last, out)

    def _translate(self, leg: Leg, rtcp: bool, now: float) -> None:
        """Relay in a meeting with a WebRTC leg: each receiver gets the packet in its own
        payload types and streams (``media_node.webrtc``)."""
        clear = leg.inbound.opened()
        if rtcp:
            if leg.webrtc is not None:
                self._feedback(leg, clear)
                return
            for other in leg.members:  # a Pinhole leg's RTCP: to the other Pinhole legs
                if self._receives(leg, other) and other.webrtc is None:
                    self._protect(other, clear, rtcp=True)
            return
        if leg.webrtc is not None:
            meeting = leg.webrtc.to_meeting(clear)
            if meeting is None:
                self.drop("codec", leg)
                return
            clear = meeting
        for other in leg.members:
            if not self._receives(leg, other):
                continue
            out = clear
            if other.webrtc is not None:
                if not other.webrtc.keyed:
                    self.drop("dtls_pending", other)
                    continue
                translated, reason = other.webrtc.for_endpoint(clear, now)
                if translated is None:
                    self.drop(reason, other)
                    continue
                out = translated
            self._protect(other, out, rtcp=False)

    def _receives(self, leg: Leg, other: Leg) -> bool:
        """Is ``other`` a receiver of ``leg``'s packets now? Counts a lost consent."""
        if other is leg or other.sink is None or (leg.cascade and other.cascade):
            return False
        if other.consent_lost:
            self.drop("no_consent", other)
            return False
        return True

    def _protect(self, other: Leg, clear: bytes, *, rtcp: bool) -> None:
        try:
            out = other.outbound.protect_rtcp(clear) if rtcp else other.outbound.protect(clear)
        except SrtpError as exc:
            self.drop("protect_" + exc.reason, other)
        else:
            self._deliver(other, out)

    def _feedback(self, leg: Leg, clear: bytes) -> None:
        """A WebRTC endpoint's RTCP: NACK, PLI and FIR about a slot go to the sender of the
        slot's source, renamed to it (RFC 4585 §6.1, RFC 5104 §4.3.1); the rest ends here."""
        assert leg.webrtc is not None
        try:
            packets = split_rtcp(clear)
        except RtpError:
            self.drop("rtcp", leg)
            return
        for packet in packets:
            target = feedback_target(packet)
            if target is None:
                continue
            source = leg.webrtc.source_of(target)
            if source is None:
                self.drop("feedback_unknown", leg)
                continue
            renamed = retarget_feedback(packet, int.from_bytes(source, "big"))
            owners = [m for m in leg.members if m is not leg and m.sends(source)]
            if not owners:  # a source on another node: its cascades carry it there
                owners = [m for m in leg.members if m.cascade]
            for owner in owners:
                if self._receives(leg, owner) and (owner.webrtc is None or owner.webrtc.keyed):
                    self._protect(owner, renamed, rtcp=True)

    @staticmethod
    def _deliver(leg: Leg, out: bytes) -> None:
        assert leg.sink is not None  # only latched legs are given packets
        leg.sink.send(out, leg.addr)
        leg.packets_out += 1
        leg.bytes_out += len(out)

    # ------------------------------------------------------------- reporting

    def stats(self) -> dict[str, LegCounters]:
        self.settle()
        return {leg_id: leg.counters() for leg_id, leg in self.legs.items()}

    def load(self) -> float:
        return min(1.0, len(self.legs) / self.capacity)


def _participant_ssrc(members: Iterable[Leg], ssrc: bytes) -> bool:
    """Is ``ssrc`` one of this node's own participants' (not a cascade's)?"""
    return any(m.sends(ssrc) for m in members)
