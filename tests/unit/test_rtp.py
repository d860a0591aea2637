"""RTP/RTCP headers (RFC 3550 §5.1, §5.3.1, §6.4.1, §6.4.2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.errors import RtpError
from wire.rtp import (
    RTP_VERSION,
    ReceptionReport,
    RtpHeader,
    build_rtcp_receiver_report,
    build_rtp,
    parse_rtcp_receiver_report,
    parse_rtp_header,
    rtcp_sender_ssrc,
    rtp_ssrc,
)

u32 = st.integers(0, 2**32 - 1)


def test_build_and_parse_round_trip() -> None:
    """RFC 3550 §5.1: V=2, M, PT, sequence, timestamp, SSRC in network order."""
    packet = build_rtp(payload_type=96, sequence=65535, timestamp=2**32 - 1, ssrc=0xDEADBEEF,
                       payload=b"media", marker=True)
    assert packet[:2] == b"\x80\xe0"
    assert parse_rtp_header(packet) == RtpHeader(
        version=RTP_VERSION, padding=False, extension=False, csrc_count=0, marker=True,
        payload_type=96, sequence=65535, timestamp=2**32 - 1, ssrc=0xDEADBEEF,
        header_length=12)
    assert packet[12:] == b"media"
    assert rtp_ssrc(packet) == 0xDEADBEEF


@given(st.integers(0, 127), st.integers(0, 0xFFFF), u32, u32, st.binary(max_size=64),
       st.booleans())
def test_round_trip_any_fields(pt: int, seq: int, ts: int, ssrc: int, payload: bytes,
                               marker: bool) -> None:
    packet = build_rtp(payload_type=pt, sequence=seq, timestamp=ts, ssrc=ssrc,
                       payload=payload, marker=marker)
    header = parse_rtp_header(packet)
    assert (header.payload_type, header.sequence, header.timestamp, header.ssrc,
            header.marker) == (pt, seq, ts, ssrc, marker)
    assert packet[header.header_length:] == payload
    assert rtp_ssrc(packet) == ssrc


def test_sequence_and_timestamp_wrap() -> None:
    """RFC 3550 §5.1: the sequence is 16 bits and the timestamp 32 bits; both wrap."""
    header = parse_rtp_header(build_rtp(payload_type=0, sequence=65536 + 7,
                                        timestamp=2**32 + 9, ssrc=1, payload=b""))
    assert (header.sequence, header.timestamp) == (7, 9)


@pytest.mark.parametrize("pt", [-1, 128])
def test_payload_type_is_seven_bits(pt: int) -> None:
    with pytest.raises(RtpError, match=rf"^payload type {pt} is outside 0-127$"):
        build_rtp(payload_type=pt, sequence=0, timestamp=0, ssrc=0, payload=b"")


def test_csrcs_and_extension_move_the_payload() -> None:
    """RFC 3550 §5.1 CC field and §5.3.1 header extension."""
    base = bytearray(build_rtp(payload_type=0, sequence=1, timestamp=1, ssrc=1, payload=b""))
    base[0] |= 0x20 | 0x10 | 2  # P bit, X bit, two CSRCs
    packet = bytes(base) + bytes(8) + b"\xbe\xde\x00\x01" + bytes(4) + b"pay"
    header = parse_rtp_header(packet)
    assert header.csrc_count == 2 and header.extension and header.padding
    assert header.header_length == 12 + 8 + 4 + 4
    assert packet[header.header_length:] == b"pay"


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (b"", "RTP packet shorter than 12 bytes"),
        (b"\x80\x00", "RTP packet shorter than 12 bytes"),
        (b"\x40" + bytes(11), "RTP version 1, expected 2"),
        (b"\x00" + bytes(11), "RTP version 0, expected 2"),
        (b"\xc0" + bytes(11), "RTP version 3, expected 2"),
        (b"\x83" + bytes(11), "RTP header with 3 CSRCs longer than the packet"),
        (b"\x90" + bytes(11), "RTP header extension longer than the packet"),
        (b"\x90" + bytes(11) + b"\xbe\xde\x00\x02" + bytes(4),
         "RTP header extension longer than the packet"),
    ],
)
def test_bad_headers_have_exact_errors(packet: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=f"^{message}$"):
        parse_rtp_header(packet)


def test_fast_ssrc_readers_check_only_the_length() -> None:
    with pytest.raises(RtpError, match=r"^RTP packet shorter than 12 bytes$"):
        rtp_ssrc(bytes(11))
    with pytest.raises(RtpError, match=r"^RTCP packet shorter than 8 bytes$"):
        rtcp_sender_ssrc(bytes(7))
    assert rtp_ssrc(bytes(8) + b"\x01\x02\x03\x04") == 0x01020304
    assert rtcp_sender_ssrc(b"\x80\xc9\x00\x01\xff\x00\x00\x01") == 0xFF000001


def test_receiver_report_round_trip() -> None:
    """RFC 3550 §6.4.2: RR with report blocks; cumulative loss is 24-bit signed."""
    blocks = [ReceptionReport(7, 25, -3, 70000, 12), ReceptionReport(8, 0, 5, 1, 0, 9, 10)]
    packet = build_rtcp_receiver_report(ssrc=42, reports=blocks)
    assert len(packet) == 8 + 24 * 2
    assert packet[:4] == b"\x82\xc9\x00\x0d"  # V=2 RC=2, PT=201, length 14 words - 1
    assert rtcp_sender_ssrc(packet) == 42
    assert parse_rtcp_receiver_report(packet) == (42, blocks)


def test_empty_receiver_report() -> None:
    """RFC 3550 §6.4.2: an RR with RC=0 is the minimal compound packet's first part."""
    packet = build_rtcp_receiver_report(ssrc=0xCAFEBABE)
    assert packet == b"\x80\xc9\x00\x01\xca\xfe\xba\xbe"
    assert parse_rtcp_receiver_report(packet) == (0xCAFEBABE, [])


report_st = st.builds(
    ReceptionReport, u32, st.integers(0, 255), st.integers(-0x800000, 0x7FFFFF), u32, u32,
    u32, u32)


@given(u32, st.lists(report_st, max_size=31))
def test_receiver_report_round_trip_any_blocks(ssrc: int, blocks: list[ReceptionReport]) -> None:
    assert parse_rtcp_receiver_report(build_rtcp_receiver_report(ssrc=ssrc, reports=blocks)) == (
        ssrc, blocks)


def test_loss_fields_are_clamped_to_their_widths() -> None:
    """RFC 3550 §6.4.1: fraction lost is 8 bits, cumulative lost 24-bit signed."""
    blocks = [ReceptionReport(2, 300, 2**30, 0, 0), ReceptionReport(3, -5, -(2**30), 0, 0)]
    packet = build_rtcp_receiver_report(ssrc=1, reports=blocks)
    _, (high, low) = parse_rtcp_receiver_report(packet)
    assert (high.fraction_lost, high.cumulative_lost) == (255, 0x7FFFFF)
    assert (low.fraction_lost, low.cumulative_lost) == (0, -0x800000)


def test_at_most_31_report_blocks() -> None:
    """RFC 3550 §6.4.2: the reception report count is 5 bits."""
    with pytest.raises(RtpError, match=r"^an RTCP receiver report holds at most 31 report "
                       r"blocks$"):
        build_rtcp_receiver_report(ssrc=1, reports=[ReceptionReport(1, 0, 0, 0, 0)] * 32)


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (b"\x80\xc9\x00", "RTCP packet shorter than 8 bytes"),
        (b"\x40\xc9\x00\x01" + bytes(4), "RTCP version 1, expected 2"),
        (b"\x80\xc8\x00\x01" + bytes(4), r"RTCP packet type 200, expected 201 \(RR\)"),
        (b"\x81\xc9\x00\x01" + bytes(4), "RTCP receiver report longer than the packet"),
        (b"\x80\xc9\x00\x07" + bytes(4), "RTCP receiver report longer than the packet"),
    ],
)
def test_bad_receiver_reports_have_exact_errors(packet: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=f"^{message}$"):
        parse_rtcp_receiver_report(packet)
