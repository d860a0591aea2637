"""RTP/RTCP headers (RFC 3550 §5.1, §6.4.2)."""

from __future__ import annotations

import pytest

from wire.errors import RtpError
from wire.rtp import (
    ReceptionReport,
    build_rtcp_receiver_report,
    build_rtp,
    parse_rtcp_receiver_report,
    parse_rtp_header,
    rtcp_sender_ssrc,
    rtp_ssrc,
)


def test_build_and_parse_round_trip() -> None:
    """RFC 3550 §5.1: V=2, M, PT, sequence, timestamp, SSRC in network order."""
    packet = build_rtp(payload_type=96, sequence=65535, timestamp=2**32 - 1, ssrc=0xDEADBEEF,
                       payload=b"media", marker=True)
    header = parse_rtp_header(packet)
    assert (header.version, header.marker, header.payload_type, header.sequence,
            header.timestamp, header.ssrc, header.header_length) == (
        2, True, 96, 65535, 2**32 - 1, 0xDEADBEEF, 12)
    assert packet[header.header_length:] == b"media"
    assert rtp_ssrc(packet) == 0xDEADBEEF


def test_csrcs_and_extension_move_the_payload() -> None:
    """RFC 3550 §5.1 CC field and §5.3.1 header extension."""
    base = bytearray(build_rtp(payload_type=0, sequence=1, timestamp=1, ssrc=1, payload=b""))
    base[0] |= 0x10 | 2  # X bit, two CSRCs
    packet = bytes(base) + bytes(8) + b"\xbe\xde\x00\x01" + bytes(4) + b"pay"
    header = parse_rtp_header(packet)
    assert header.csrc_count == 2 and header.extension
    assert packet[header.header_length:] == b"pay"


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (b"\x80\x00", "RTP packet shorter than 12 bytes"),
        (b"\x40" + bytes(11), "RTP version 1, expected 2"),
        (b"\x83" + bytes(11), "RTP header with 3 CSRCs longer than the packet"),
        (b"\x90" + bytes(11), "RTP header extension longer than the packet"),
    ],
)
def test_bad_headers_have_exact_errors(packet: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=f"^{message}$"):
        parse_rtp_header(packet)


def test_receiver_report_round_trip() -> None:
    """RFC 3550 §6.4.2: RR with report blocks; cumulative loss is 24-bit signed."""
    blocks = [ReceptionReport(7, 25, -3, 70000, 12), ReceptionReport(8, 0, 5, 1, 0, 9, 10)]
    packet = build_rtcp_receiver_report(ssrc=42, reports=blocks)
    assert len(packet) == 8 + 24 * 2 and packet[1] == 201
    assert rtcp_sender_ssrc(packet) == 42
    assert parse_rtcp_receiver_report(packet) == (42, blocks)
