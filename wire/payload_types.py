"""The payload types of a meeting: one number per codec on the node's inside.

Every leg of a meeting speaks them on the node's inside and across cascades.
Pinhole's own client sends them as they are; a WebRTC endpoint chose its own
numbers in its SDP offer (RFC 3264 §6.1: the answer keeps the offerer's), so its
leg maps each of its payload types to the meeting's on the way in and back on
the way out (``media_node.webrtc``). A codec a receiver did not negotiate is
not sent to it.

    PT   codec                     kind   who sends it
    0    PCMU/8000                 audio  Pinhole's client (RFC 3551 §6, static), browsers
    96   x-pinhole-synthetic/90000 video  Pinhole's client: a synthetic video load, no codec
    111  opus/48000/2              audio  browsers, aiortc (RFC 7587)
    120  VP8/90000                 video  browsers, aiortc (RFC 7741)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal


@dataclass(frozen=True, slots=True)
class MeetingCodec:
    payload_type: int
    kind: Literal["audio", "video"]
    name: str
    clock_rate: int
    channels: int | None = None


PCMU: Final = MeetingCodec(0, "audio", "PCMU", 8000)
SYNTHETIC_VIDEO: Final = MeetingCodec(96, "video", "x-pinhole-synthetic", 90000)
OPUS: Final = MeetingCodec(111, "audio", "opus", 48000, 2)
VP8: Final = MeetingCodec(120, "video", "VP8", 90000)
MEETING_CODECS: Final = (PCMU, SYNTHETIC_VIDEO, OPUS, VP8)
BY_PAYLOAD_TYPE: Final = {c.payload_type: c for c in MEETING_CODECS}


def meeting_codec(name: str, clock_rate: int, channels: int | None = None) -> MeetingCodec | None:
    """The meeting's codec for an SDP ``a=rtpmap`` (names are media subtypes, case-insensitive:
    RFC 4855; a missing channel count means one, RFC 8866 §6.6)."""
    for codec in MEETING_CODECS:
        if (codec.name.lower() == name.lower() and codec.clock_rate == clock_rate
                and (codec.channels or 1) == (channels or 1)):
            return codec
    return None
