"""The transport ladder and device-profile table (docs/design.md "Ports"; seeds cited per row)."""

from __future__ import annotations

import pytest

from wire.errors import ProfileRefused
from wire.transports import (
    LADDER,
    PROFILES,
    DeviceProfile,
    ProxyAuth,
    ProxyDiscovery,
    Transport,
    allowed_rungs,
    check_media,
    check_proxy,
    plan,
    rung,
)


def test_ladder_order_is_the_designs() -> None:
    """docs/design.md "Ports": udp/5004, udp/9000 (legacy-dc), udp/33434, tcp/5004, tls/443,
    http-proxy."""
    assert [r.name for r in LADDER] == [
        "udp/5004", "udp/9000", "udp/33434", "tcp/5004", "tls/443", "http-proxy",
    ]
    assert [r.default_port for r in LADDER] == [5004, 9000, 33434, 5004, 443, 443]


def test_every_row_cites_a_seed_sentence() -> None:
    for r in LADDER:
        assert r.seed.startswith(("WP:", "FNR:"))
    for rule in PROFILES.values():
        assert rule.seed.startswith(("WP:", "FNR:"))


def test_penalties_rank_udp_tcp_tls_proxy() -> None:
    """docs/design.md "Assignment": transport penalty udp < tcp < tls < proxy."""
    by = {r.transport: r.penalty_ms for r in LADDER}
    assert by[Transport.UDP] < by[Transport.TCP] < by[Transport.TLS] < by[Transport.HTTP_PROXY]


@pytest.mark.parametrize(
    ("profile", "legacy", "expected"),
    [
        (DeviceProfile.DESKTOP, False,
         ["udp/5004", "udp/33434", "tcp/5004", "tls/443", "http-proxy"]),
        (DeviceProfile.DESKTOP, True, ["udp/5004", "udp/9000", "udp/33434", "tcp/5004", "tls/443",
                                       "http-proxy"]),
        # FNR: "The Cisco Spark app on mobile devices supports only TCP fallback."
        (DeviceProfile.MOBILE, False, ["udp/5004", "udp/33434", "tcp/5004"]),
        # FNR: room media "does not work if UDP traffic to both port 5004 and port 33434 is blocked"
        (DeviceProfile.ROOM, False, ["udp/5004", "udp/33434"]),
        # WP: "Cisco Spark Board does not support TCP/TLS fallback for media"
        (DeviceProfile.BOARD, False, ["udp/5004", "udp/33434"]),
    ],
)
def test_allowed_rungs(profile: DeviceProfile, legacy: bool, expected: list[str]) -> None:
    assert [r.name for r in allowed_rungs(profile, legacy_dc=legacy)] == expected


def test_room_refuses_proxy_media_with_a_clear_message() -> None:
    """WP: 'Hard endpoints only support sending the signaling through the HTTP proxy'."""
    with pytest.raises(ProfileRefused, match=r"^room devices cannot send media through an HTTP "
                       r"proxy"):
        check_media(DeviceProfile.ROOM, Transport.HTTP_PROXY)
    check_media(DeviceProfile.DESKTOP, Transport.HTTP_PROXY)


def test_mobile_stops_at_tcp() -> None:
    check_media(DeviceProfile.MOBILE, Transport.TCP)
    with pytest.raises(ProfileRefused, match="mobile devices cannot send media through TLS"):
        check_media(DeviceProfile.MOBILE, Transport.TLS)


def test_kerberos_is_refused() -> None:
    """FNR: 'Kerberos is not supported.'"""
    with pytest.raises(ProfileRefused, match="Kerberos proxy authentication is not supported"):
        check_proxy(DeviceProfile.DESKTOP, ProxyDiscovery.EXPLICIT, ProxyAuth.KERBEROS)
    check_proxy(DeviceProfile.DESKTOP, ProxyDiscovery.PAC, ProxyAuth.NTLM)


def test_only_desktop_uses_pac() -> None:
    """WP: Android 'must manually configure any HTTP proxy'; boards 'manually make these
    settings'."""
    for profile in (DeviceProfile.MOBILE, DeviceProfile.ROOM, DeviceProfile.BOARD):
        with pytest.raises(ProfileRefused, match="cannot discover a proxy by pac"):
            check_proxy(profile, ProxyDiscovery.PAC, None)


def test_plan_orders_by_ladder_and_adds_proxy_on_tls() -> None:
    offered = ["tls/443", "tcp/5004", "udp/5004", "udp/33434"]
    assert [r.name for r in plan(DeviceProfile.DESKTOP, offered, legacy_dc=False)] == [
        "udp/5004", "udp/33434", "tcp/5004", "tls/443", "http-proxy",
    ]
    assert [r.name for r in plan(DeviceProfile.ROOM, offered, legacy_dc=False)] == [
        "udp/5004", "udp/33434",
    ]


def test_plan_refuses_when_nothing_fits() -> None:
    with pytest.raises(ProfileRefused, match=r"^board devices can use none of the node's "
                       r"transports \(http-proxy, tls/443\)"):
        plan(DeviceProfile.BOARD, ["tls/443"], legacy_dc=False)


def test_unknown_rung_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown transport 'udp/1'; expected one of udp/5004"):
        rung("udp/1")
