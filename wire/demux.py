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
(RFC 5761 §4: RTCP packet types 192-223).
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
    STUN = "stun"
    ZRTP = "zrtp"
    DTLS = "dtls"
    TURN_CHANNEL = "turn_channel"
    RTP = "rtp"  # RTP or RTCP: see is_rtcp
    UNKNOWN = "unknown"


_TABLE: Final = tuple(
    PacketKind.STUN if b in STUN_FIRST
    else PacketKind.ZRTP if b in ZRTP
    else PacketKind.DTLS if b in DTLS
    else PacketKind.TURN_CHANNEL if b in TURN_CHANNEL
    else PacketKind.RTP if b in RTP_RTCP
    else PacketKind.UNKNOWN
    for b in range(256)
)


def classify(data: bytes) -> PacketKind:
    """What the first byte says the packet is (RFC 7983 §7); empty is UNKNOWN."""
    return _TABLE[data[0]] if data else PacketKind.UNKNOWN


def is_rtcp(data: bytes) -> bool:
    """An RTP-range packet whose second byte is an RTCP packet type (RFC 5761 §4)."""
    return len(data) >= 2 and data[1] in RTCP_PACKET_TYPES
