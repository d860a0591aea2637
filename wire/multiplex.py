"""One leg's transport, several protocols: telling them apart, and framing them on a stream.

**Demultiplexing (RFC 7983 §7)**: STUN, ZRTP, DTLS, TURN channels and RTP/RTCP by
the first byte::

    +----------------+
    |        [0..3] -+--> STUN
    |      [16..19] -+--> ZRTP
    |      [20..63] -+--> DTLS
    |      [64..79] -+--> TURN channel
    |    [128..191] -+--> RTP/RTCP
    +----------------+

Pinhole media ports carry STUN, DTLS (WebRTC legs) and SRTP/SRTCP; everything else is
dropped and counted by the caller. RTCP is told from RTP by the second byte
(RFC 5761 §4: RTCP packet types 192-223; RFC 3550 §6.4 puts the RTCP packet
type in the whole second byte, where RTP has the marker bit and PT).

**Framing (RFC 4571)**: every packet on a TCP or TLS media connection carries a
2-byte length. RFC 4571 §2: "LENGTH ... 16-bit unsigned integer in network byte
order" followed by that many bytes of RTP, RTCP or (docs/design.md) STUN. The
decoder is incremental (sans-I/O): feed it whatever chunks the stream delivers, get
back whole frames. A declared length above the decoder's limit is an error
after which the connection must be closed (the stream has lost its framing).

Zero-length frames: RFC 4571 §2 allows LENGTH 0, so :func:`encode_frame`
encodes an empty packet (``b"\\x00\\x00"``) and :class:`FrameDecoder` accepts
it on input but returns nothing for it, since it carries no packet.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from wire.errors import FramingError

# ------------------------------------------------------------ RFC 7983 demultiplexing

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


# ------------------------------------------------------------------ RFC 4571 framing

MAX_FRAME_LENGTH: Final = 0xFFFF  # RFC 4571 §2: the length field is 16 bits
DEFAULT_FRAME_LIMIT: Final = 4096  # far above any media packet Pinhole sends
_HEADER: Final = 2


def encode_frame(packet: bytes) -> bytes:
    """``packet`` with its RFC 4571 §2 length prefix (an empty packet is allowed)."""
    n = len(packet)
    if n > MAX_FRAME_LENGTH:
        raise FramingError(f"frame of {n} bytes exceeds the RFC 4571 maximum of 65535")
    return n.to_bytes(2, "big") + packet


class FrameDecoder:
    """Whole frames out of an RFC 4571 byte stream, however it is chunked.

    Frames are sliced straight out of the chunk when nothing is buffered (the
    common case); only an incomplete tail is kept, in a ``bytearray`` that
    is trimmed once per :meth:`feed`, not once per frame.
    """

    __slots__ = ("_buffer", "_failed", "limit")

    def __init__(self, limit: int = DEFAULT_FRAME_LIMIT) -> None:
        if not 1 <= limit <= MAX_FRAME_LENGTH:
            raise FramingError(f"frame limit {limit} is outside 1-65535")
        self.limit = limit
        self._buffer = bytearray()
        self._failed = False

    @property
    def failed(self) -> bool:
        """True once a frame over the limit was seen; every later feed raises."""
        return self._failed

    @property
    def pending(self) -> int:
        """Bytes buffered towards the next frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Every frame completed by ``data`` (possibly none), in stream order."""
        if self._failed:
            raise FramingError("decoder failed earlier; close the connection")
        buffer = self._buffer
        source: bytes | bytearray
        if buffer:
            buffer += data
            source = buffer
        else:
            source = data
        limit = self.limit
        frames: list[bytes] = []
        pos, end = 0, len(source)
        too_long = -1
        with memoryview(source) as view:
            while end - pos >= _HEADER:
                length = (source[pos] << 8) | source[pos + 1]
                if length > limit:
                    too_long = length
                    break
                start = pos + _HEADER
                if end - start < length:
                    break
                if length:
                    frames.append(view[start:start + length].tobytes())
                pos = start + length
            if too_long < 0 and source is data and pos < end:
                buffer += view[pos:]
        if too_long >= 0:
            self._failed = True
            buffer.clear()
            raise FramingError(f"frame of {too_long} bytes exceeds the limit of {limit}")
        if source is buffer and pos:
            del buffer[:pos]
        return frames
