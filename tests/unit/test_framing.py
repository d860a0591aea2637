"""RFC 4571 framing: any chunking of the stream gives back the same frames."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.errors import FramingError
from wire.multiplex import DEFAULT_FRAME_LIMIT, MAX_FRAME_LENGTH, FrameDecoder, encode_frame

frames_st = st.lists(st.binary(min_size=1, max_size=300), max_size=12)


def _stream(frames: list[bytes]) -> bytes:
    return b"".join(encode_frame(f) for f in frames)


def test_encode_prefixes_the_16_bit_length() -> None:
    """RFC 4571 §2: LENGTH is a 16-bit unsigned integer in network byte order."""
    assert encode_frame(b"abc") == b"\x00\x03abc"
    assert encode_frame(bytes(0x1234))[:2] == b"\x12\x34"
    assert encode_frame(bytes(MAX_FRAME_LENGTH))[:2] == b"\xff\xff"


def test_encode_allows_an_empty_frame() -> None:
    """RFC 4571 §2 allows LENGTH 0."""
    assert encode_frame(b"") == b"\x00\x00"


def test_encode_refuses_what_16_bits_cannot_say() -> None:
    with pytest.raises(FramingError, match=r"^frame of 65536 bytes exceeds the RFC 4571 maximum "
                       r"of 65535$"):
        encode_frame(bytes(65536))


@given(frames_st)
def test_split_at_every_byte_boundary(frames: list[bytes]) -> None:
    """Each split point of the stream (two chunks) yields exactly the frames sent."""
    stream = _stream(frames)
    for cut in range(len(stream) + 1):
        decoder = FrameDecoder()
        assert decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) == frames
        assert decoder.pending == 0


@given(frames_st)
def test_one_byte_at_a_time(frames: list[bytes]) -> None:
    stream = _stream(frames)
    decoder = FrameDecoder()
    out: list[bytes] = []
    for i in range(len(stream)):
        out += decoder.feed(stream[i:i + 1])
    assert out == frames and decoder.pending == 0


@given(frames_st, st.lists(st.integers(1, 700), min_size=1, max_size=40))
def test_any_chunking(frames: list[bytes], sizes: list[int]) -> None:
    """Byte-at-a-time, many frames per chunk, or anything between."""
    stream = _stream(frames)
    decoder = FrameDecoder()
    out: list[bytes] = []
    pos, i = 0, 0
    while pos < len(stream):
        size = sizes[i % len(sizes)]
        out += decoder.feed(stream[pos:pos + size])
        pos, i = pos + size, i + 1
    assert out == frames
    assert decoder.pending == 0


@given(st.lists(st.binary(max_size=40), max_size=12), st.integers(0, 500))
def test_zero_length_frames_are_skipped_wherever_they_fall(frames: list[bytes], cut: int) -> None:
    """The decoder's choice: LENGTH 0 carries no packet, so it yields nothing."""
    stream = _stream(frames)
    cut = min(cut, len(stream))
    decoder = FrameDecoder()
    assert decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) == [f for f in frames if f]


def test_many_frames_in_one_chunk_and_a_partial_tail() -> None:
    decoder = FrameDecoder()
    chunk = encode_frame(b"one") + encode_frame(b"two") + encode_frame(b"three")[:3]
    assert decoder.feed(chunk) == [b"one", b"two"]
    assert decoder.pending == 3
    assert decoder.feed(b"hree" + encode_frame(b"four")[:1]) == [b"three"]
    assert decoder.pending == 1
    assert decoder.feed(b"\x04four") == [b"four"]
    assert decoder.pending == 0


def test_empty_feed_is_harmless() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\x00") == []
    assert decoder.feed(b"") == []
    assert decoder.pending == 1


def test_a_frame_over_the_limit_fails_the_decoder() -> None:
    """A length above the limit means the stream is not ours: fail, then refuse more."""
    decoder = FrameDecoder(limit=100)
    assert decoder.feed(encode_frame(bytes(100))) == [bytes(100)]
    assert not decoder.failed
    with pytest.raises(FramingError, match=r"^frame of 101 bytes exceeds the limit of 100$"):
        decoder.feed(b"\x00\x65")
    assert decoder.failed
    assert decoder.pending == 0
    with pytest.raises(FramingError, match=r"^decoder failed earlier; close the connection$"):
        decoder.feed(encode_frame(b"ok"))


def test_the_limit_is_checked_as_soon_as_the_length_arrives() -> None:
    """No need to buffer a bogus frame's body before refusing it."""
    decoder = FrameDecoder(limit=10)
    assert decoder.feed(b"\x01") == []
    with pytest.raises(FramingError, match=r"^frame of 258 bytes exceeds the limit of 10$"):
        decoder.feed(b"\x02")
    assert decoder.failed


def test_a_bad_length_after_good_frames_in_one_chunk_still_fails() -> None:
    decoder = FrameDecoder(limit=10)
    with pytest.raises(FramingError, match=r"^frame of 4660 bytes exceeds the limit of 10$"):
        decoder.feed(encode_frame(b"fine") + b"\x12\x34")
    assert decoder.failed


@pytest.mark.parametrize("limit", [0, 65536])
def test_limit_must_fit_the_length_field(limit: int) -> None:
    with pytest.raises(FramingError, match=rf"^frame limit {limit} is outside 1-65535$"):
        FrameDecoder(limit=limit)


@pytest.mark.parametrize("limit", [1, 65535])
def test_limits_at_both_ends_of_the_length_field_are_accepted(limit: int) -> None:
    """RFC 4571 §2: a 16-bit LENGTH, so 1 and 65535 are both valid limits (mutants
    ``1 <= limit`` → ``2 <= limit`` and ``<=`` → ``<`` survived without this)."""
    decoder = FrameDecoder(limit=limit)
    assert list(decoder.feed(encode_frame(bytes(limit)))) == [bytes(limit)]


def test_default_limit_takes_any_media_packet() -> None:
    assert FrameDecoder().feed(encode_frame(bytes(DEFAULT_FRAME_LIMIT))) == [
        bytes(DEFAULT_FRAME_LIMIT)]
    with pytest.raises(FramingError, match=r"^frame of 4097 bytes exceeds the limit of 4096$"):
        FrameDecoder().feed(encode_frame(bytes(DEFAULT_FRAME_LIMIT + 1)))


def test_largest_frame_with_the_largest_limit() -> None:
    decoder = FrameDecoder(limit=MAX_FRAME_LENGTH)
    packet = bytes(range(256)) * 255 + bytes(255)
    assert decoder.feed(encode_frame(packet)) == [packet]
