"""RFC 7983 §7 first-byte demultiplexing, at every range boundary."""

from __future__ import annotations

import pytest

from wire.multiplex import (
    DTLS,
    RTP_RTCP,
    STUN_FIRST,
    TURN_CHANNEL,
    ZRTP,
    PacketKind,
    classify,
    is_rtcp,
)


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
    assert classify(bytes([first])) is kind  # only the first byte matters


def test_the_ranges_are_the_rfc_7983_ranges() -> None:
    """RFC 7983 §7, read as half-open ranges."""
    ours = (STUN_FIRST, ZRTP, DTLS, TURN_CHANNEL, RTP_RTCP)
    assert ours == (range(0, 4), range(16, 20), range(20, 64), range(64, 80), range(128, 192))


def test_every_first_byte_agrees_with_the_ranges() -> None:
    ranges = {PacketKind.STUN: STUN_FIRST, PacketKind.ZRTP: ZRTP, PacketKind.DTLS: DTLS,
              PacketKind.TURN_CHANNEL: TURN_CHANNEL, PacketKind.RTP: RTP_RTCP}
    for first in range(256):
        expected = [kind for kind, r in ranges.items() if first in r] or [PacketKind.UNKNOWN]
        assert [classify(bytes([first]))] == expected, first


def test_empty_packet_is_unknown() -> None:
    assert classify(b"") is PacketKind.UNKNOWN


def test_kind_values_are_counter_names() -> None:
    assert [k.value for k in PacketKind] == [
        "stun", "zrtp", "dtls", "turn_channel", "rtp", "unknown"]


@pytest.mark.parametrize(("second", "rtcp"), [(0, False), (127, False), (191, False),
                                              (192, True), (200, True), (201, True),
                                              (223, True), (224, False), (255, False)])
def test_rtcp_by_packet_type(second: int, rtcp: bool) -> None:
    """RFC 5761 §4: RTCP packet types 192-223 tell RTCP from RTP on one port."""
    assert is_rtcp(bytes([0x80, second])) is rtcp
    assert is_rtcp(bytes([0x80, second]) + bytes(10)) is rtcp


def test_rtcp_needs_two_bytes() -> None:
    assert not is_rtcp(b"\x80")
    assert not is_rtcp(b"")
