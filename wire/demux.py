"""RFC 7983 §7: demultiplex STUN, ZRTP, DTLS, TURN channels and RTP/RTCP by the first byte.

    +----------------+
    |        [0..3] -+--> STUN
    |      [16..19] -+--> ZRTP
    |      [20..63] -+--> DTLS
    |      [64..79] -+--> TURN channel
    |    [128..191] -+--> RTP/RTCP
    +----------------+

Pinhole media ports carry STUN and SRTP/SRTCP only; everything else is
dropped and counted by the caller. RTCP is told from RTP by the second byte
(RFC 5761 §4: RTCP packet types 192-223; RFC 3550 §6.4 puts the RTCP packet
type in the whole second byte, where RTP has the marker bit and PT).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

STUN_FIRST: Final = range(0, 4)
ZRTP: Final = range(16, 20)
DTLS: Final = range(20, 64)
TURN_CHANNEL: Final = range(64, 80)
RTP_RTCP: Final = range(128, 192)
RTCP_PACKET_TYPES: Final = range(192, 224)  # RFC 5761 §4


class PacketKind(StrEnum):
    """What RFC 7983 §7 says a packet is, from its first byte."""

    STUN = "stun"
    ZRTP = "zrtp"
    DTLS = "dtls"
    TURN_CHANNEL = "turn_channel"
    RTP = "rtp"  # RTP or RTCP: see is_rtcp
    UNKNOWN = "unknown"


def _kind(first: int) -> PacketKind:
    if first in STUN_FIRST:
        return PacketKind.STUN
    if first in ZRTP:
        return PacketKind.ZRTP
    if first in DTLS:
        return PacketKind.DTLS
    if first in TURN_CHANNEL:
        return PacketKind.TURN_CHANNEL
    if first in RTP_RTCP:
        return PacketKind.RTP
    return PacketKind.UNKNOWN


# One lookup per packet on the hot path.
_TABLE: Final[tuple[PacketKind, ...]] = tuple(_kind(b) for b in range(256))


def classify(data: bytes) -> PacketKind:
    """What the first byte says the packet is (RFC 7983 §7); empty is UNKNOWN."""
    return _TABLE[data[0]] if data else PacketKind.UNKNOWN


def is_rtcp(data: bytes) -> bool:
    """True if the second byte is an RTCP packet type, 192-223 (RFC 5761 §4).

    Meaningful only for packets that :func:`classify` calls RTP.
    """
    return len(data) >= 2 and data[1] in RTCP_PACKET_TYPES
