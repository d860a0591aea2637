"""RFC 4571 framing: every packet on a TCP or TLS media connection carries a 2-byte length.

RFC 4571 §2: "LENGTH ... 16-bit unsigned integer in network byte order"
followed by that many bytes of RTP, RTCP or (docs/design.md) STUN. The decoder is
incremental (sans-I/O): feed it whatever chunks the stream delivers, get
back whole frames. A declared length above the decoder's limit is an error
after which the connection must be closed (the stream has lost its framing).

Zero-length frames: RFC 4571 §2 allows LENGTH 0, so :func:`encode_frame`
encodes an empty packet (``b"\\x00\\x00"``) and :class:`FrameDecoder` accepts
it on input but returns nothing for it, since it carries no packet.
"""

from __future__ import annotations

from typing import Final

from wire.errors import FramingError

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
