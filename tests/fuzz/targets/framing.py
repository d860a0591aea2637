"""The ``framing`` fuzz target (wire.multiplex)."""

from __future__ import annotations

from wire.errors import FramingError
from wire.multiplex import FrameDecoder, encode_frame


def _frames(chunks: list[bytes]) -> tuple[list[bytes], int] | None:
    decoder = FrameDecoder(512)
    frames: list[bytes] = []
    try:
        for chunk in chunks:
            frames += decoder.feed(chunk)
    except FramingError:
        return None
    return frames, decoder.pending


def framing(data: bytes) -> None:
    """RFC 4571 framing (wire.multiplex): any split gives the same frames (or error)."""
    cut = data[0] % (len(data) + 1) if data else 0
    whole = _frames([data])
    assert _frames([data[:cut], data[cut:]]) == whole, "the split changed the frames"
    assert _frames([data[i:i + 1] for i in range(len(data))]) == whole, "byte by byte"
    if whole is not None:
        frames, pending = whole
        assert sum(len(encode_frame(f)) for f in frames) + pending <= len(data)
