"""RFC 4571 framing: any chunking of the stream gives back the same frames."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.errors import FramingError
from wire.framing import DEFAULT_FRAME_LIMIT, FrameDecoder, encode_frame

frames_st = st.lists(st.binary(min_size=1, max_size=300), max_size=12)


def test_encode_prefixes_the_16_bit_length() -> None:
    """RFC 4571 §2: LENGTH is a 16-bit unsigned integer in network byte order."""
    assert encode_frame(b"abc") == b"\x00\x03abc"
    assert encode_frame(bytes(0x1234))[:2] == b"\x12\x34"


def test_encode_refuses_what_16_bits_cannot_say() -> None:
    with pytest.raises(FramingError, match=r"^frame of 65536 bytes exceeds the RFC 4571 maximum "
                       r"of 65535$"):
        encode_frame(bytes(65536))


@given(frames_st)
def test_split_at_every_byte_boundary(frames: list[bytes]) -> None:
    """Each split point of the stream (two chunks) yields exactly the frames sent."""
    stream = b"".join(encode_frame(f) for f in frames)
    for cut in range(len(stream) + 1):
        decoder = FrameDecoder()
        assert decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) == frames
        assert decoder.pending == 0


@given(frames_st, st.lists(st.integers(1, 50), min_size=1, max_size=40))
def test_any_chunking(frames: list[bytes], sizes: list[int]) -> None:
    """Byte-at-a-time, many frames per chunk, or anything between."""
    stream = b"".join(encode_frame(f) for f in frames)
    decoder, out, pos, i = FrameDecoder(), [], 0, 0
    while pos < len(stream):
        size = sizes[i % len(sizes)]
        out += decoder.feed(stream[pos:pos + size])
        pos, i = pos + size, i + 1
    assert out == frames


def test_many_frames_in_one_chunk_and_a_partial_tail() -> None:
    decoder = FrameDecoder()
    chunk = encode_frame(b"one") + encode_frame(b"two") + encode_frame(b"three")[:3]
    assert decoder.feed(chunk) == [b"one", b"two"]
    assert decoder.pending == 3
    assert decoder.feed(b"hree") == [b"three"]


def test_zero_length_frames_are_skipped() -> None:
    """RFC 4571 allows LENGTH 0; it carries no packet."""
    assert FrameDecoder().feed(b"\x00\x00" + encode_frame(b"x")) == [b"x"]


def test_a_frame_over_the_limit_fails_the_decoder() -> None:
    """A length above the limit means the stream is not ours: fail, then refuse more."""
    decoder = FrameDecoder(limit=100)
    with pytest.raises(FramingError, match=r"^frame of 101 bytes exceeds the limit of 100$"):
        decoder.feed(b"\x00\x65")
    assert decoder.failed
    with pytest.raises(FramingError, match=r"^decoder failed earlier; close the connection$"):
        decoder.feed(encode_frame(b"ok"))


def test_default_limit_takes_any_media_packet() -> None:
    assert FrameDecoder().feed(encode_frame(bytes(DEFAULT_FRAME_LIMIT))) == [
        bytes(DEFAULT_FRAME_LIMIT)]
