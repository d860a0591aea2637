"""RFC 4571 framing: every packet on a TCP or TLS media connection carries a 2-byte length.

RFC 4571 §2: "LENGTH ... 16-bit unsigned integer in network byte order"
followed by that many bytes of RTP, RTCP or (DESIGN.md) STUN. The decoder is
incremental (sans-I/O): feed it whatever chunks the stream delivers, get
back whole frames. A declared length above the decoder's limit is an error
after which the connection must be closed (the stream has lost its framing).
A zero-length frame carries nothing and is skipped.
"""

from __future__ import annotations

from typing import Final

from wire.errors import FramingError

MAX_FRAME_LENGTH: Final = 0xFFFF  # RFC 4571 §2: the length field is 16 bits
DEFAULT_FRAME_LIMIT: Final = 4096  # far above any media packet Pinhole sends
_HEADER: Final = 2


def encode_frame(packet: bytes) -> bytes:
    """``packet`` with its RFC 4571 length prefix."""
    n = len(packet)
    if n > MAX_FRAME_LENGTH:
        raise FramingError(f"frame of {n} bytes exceeds the RFC 4571 maximum of 65535")
    return n.to_bytes(2, "big") + packet


class FrameDecoder:
    """Whole frames out of an RFC 4571 byte stream, however it is chunked."""

    __slots__ = ("_buffer", "_failed", "limit")

    def __init__(self, limit: int = DEFAULT_FRAME_LIMIT) -> None:
        if not 1 <= limit <= MAX_FRAME_LENGTH:
            raise FramingError(f"frame limit {limit} is outside 1-65535")
        self.limit = limit
        self._buffer = bytearray()
        self._failed = False

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def pending(self) -> int:
        """Bytes buffered towards the next frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Every frame completed by ``data`` (possibly none)."""
        if self._failed:
            raise FramingError("decoder failed earlier; close the connection")
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        pos, end = 0, len(buffer)
        while end - pos >= _HEADER:
            length = (buffer[pos] << 8) | buffer[pos + 1]
            if length > self.limit:
                self._failed = True
                del buffer[:]
                raise FramingError(f"frame of {length} bytes exceeds the limit of {self.limit}")
            if end - pos - _HEADER < length:
                break
            if length:
                frames.append(bytes(buffer[pos + _HEADER:pos + _HEADER + length]))
            pos += _HEADER + length
        if pos:
            del buffer[:pos]
        return frames
