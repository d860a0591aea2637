"""Rewriting RTP headers and RTCP feedback for a media translator (WebRTC legs' slots).

RFC 3550 §5.1 (the fixed header), §6.1 (compound RTCP), RFC 4585 §6.1 (feedback:
sender SSRC, media source SSRC), §6.2.1 (NACK), §6.3.1 (PLI), RFC 5104 §4.3.1
(FIR: media source 0, the SSRC in each FCI entry).
"""

from __future__ import annotations

import struct

import pytest

from wire.errors import RtpError
from wire.rtp import (
    RTCP_PSFB,
    RTCP_RTPFB,
    build_rtcp_receiver_report,
    build_rtp,
    feedback_target,
    parse_rtp_header,
    retarget_feedback,
    rewrite_rtp,
    split_rtcp,
)


def _feedback(packet_type: int, fmt: int, sender: int, media: int, fci: bytes = b"") -> bytes:
    words = (12 + len(fci)) // 4 - 1
    return struct.pack("!BBHII", 0x80 | fmt, packet_type, words, sender, media) + fci


def test_rewrite_keeps_marker_sequence_timestamp_and_payload() -> None:
    """RFC 3550 §5.1: only PT (7 bits) and SSRC change; M stays."""
    packet = build_rtp(payload_type=96, sequence=7, timestamp=90000, ssrc=1, payload=b"vp8",
                       marker=True)
    header = parse_rtp_header(rewrite_rtp(packet, payload_type=120, ssrc=0xCAFE))
    assert (header.payload_type, header.ssrc, header.marker) == (120, 0xCAFE, True)
    assert (header.sequence, header.timestamp) == (7, 90000)
    assert rewrite_rtp(packet, payload_type=120, ssrc=0xCAFE)[12:] == b"vp8"
    with pytest.raises(RtpError, match=r"^RTP packet shorter than 12 bytes$"):
        rewrite_rtp(packet[:11], payload_type=0, ssrc=1)
    with pytest.raises(RtpError, match=r"^payload type 128 is outside 0-127$"):
        rewrite_rtp(packet, payload_type=128, ssrc=1)


def test_split_a_compound_packet_and_refuse_a_lying_length() -> None:
    """RFC 3550 §6.1: packets one after another, each by its length field."""
    rr = build_rtcp_receiver_report(ssrc=5)
    pli = _feedback(RTCP_PSFB, 1, 5, 9)
    assert split_rtcp(rr + pli) == [rr, pli]
    with pytest.raises(RtpError, match=r"^RTCP packet longer than the datagram$"):
        split_rtcp(rr + pli[:-4])
    with pytest.raises(RtpError, match=r"^RTCP packet shorter than its 4-byte header$"):
        split_rtcp(rr + b"\x80")
    with pytest.raises(RtpError, match=r"^RTCP version 0, expected 2$"):
        split_rtcp(b"\x00" + rr[1:])


def test_feedback_targets() -> None:
    """NACK and PLI name their media source; FIR names it in its FCI; others none."""
    assert feedback_target(_feedback(RTCP_RTPFB, 1, 5, 9, b"\x00\x01\x00\x00")) == 9
    assert feedback_target(_feedback(RTCP_PSFB, 1, 5, 9)) == 9
    fir = _feedback(RTCP_PSFB, 4, 5, 0, struct.pack("!IB3x", 11, 1))
    assert feedback_target(fir) == 11
    remb = _feedback(RTCP_PSFB, 15, 5, 0, b"REMB" + bytes(8))
    assert feedback_target(remb) is None
    assert feedback_target(build_rtcp_receiver_report(ssrc=5)) is None
    assert feedback_target(b"\x81\xce\x00") is None


def test_retarget_renames_the_source_and_nothing_else() -> None:
    """RFC 4585 §6.1 / RFC 5104 §4.3.1.2: the sender SSRC stays the reporter's."""
    pli = _feedback(RTCP_PSFB, 1, 5, 9)
    assert retarget_feedback(pli, 77) == _feedback(RTCP_PSFB, 1, 5, 77)
    fir = _feedback(RTCP_PSFB, 4, 5, 0, struct.pack("!IB3x", 11, 1))
    assert retarget_feedback(fir, 77) == _feedback(RTCP_PSFB, 4, 5, 0, struct.pack("!IB3x", 77, 1))
