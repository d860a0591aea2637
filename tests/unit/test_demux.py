"""RFC 7983 §7 first-byte demultiplexing, at every range boundary."""

from __future__ import annotations

import pytest

from wire.demux import PacketKind, classify, is_rtcp


@pytest.mark.parametrize(
    ("first", "kind"),
    [
        (0, PacketKind.STUN), (3, PacketKind.STUN), (4, PacketKind.UNKNOWN),
        (15, PacketKind.UNKNOWN), (16, PacketKind.ZRTP), (19, PacketKind.ZRTP),
        (20, PacketKind.DTLS), (63, PacketKind.DTLS), (64, PacketKind.TURN_CHANNEL),
        (79, PacketKind.TURN_CHANNEL), (80, PacketKind.UNKNOWN), (127, PacketKind.UNKNOWN),
        (128, PacketKind.RTP), (191, PacketKind.RTP), (192, PacketKind.UNKNOWN),
        (255, PacketKind.UNKNOWN),
    ],
)
def test_first_byte_ranges(first: int, kind: PacketKind) -> None:
    """RFC 7983 §7: [0..3] STUN, [16..19] ZRTP, [20..63] DTLS, [64..79] TURN, [128..191] RTP."""
    assert classify(bytes([first, 0, 0, 0])) is kind


def test_empty_packet_is_unknown() -> None:
    assert classify(b"") is PacketKind.UNKNOWN


@pytest.mark.parametrize(("second", "rtcp"), [(0, False), (191, False), (192, True),
                                              (200, True), (223, True), (224, False)])
def test_rtcp_by_packet_type(second: int, rtcp: bool) -> None:
    """RFC 5761 §4: RTCP packet types 192-223 tell RTCP from RTP on one port."""
    assert is_rtcp(bytes([0x80, second])) is rtcp


def test_rtcp_needs_two_bytes() -> None:
    assert not is_rtcp(b"\x80")
