"""The content (screen sharing) ladder and the device rule that comes with it.

Seeds (FNR): "Cisco Spark uses TCP for messaging, file transfer, and screen sharing and
UDP as the preferred method for audio and video"; ports table "Screen Sharing (in app)
TCP 5004* 33434" ("*Preferred port."); "If TCP traffic is also blocked, then Cisco Spark
for Windows and Mac attempts to route traffic through your organization's HTTP Proxy for
all services, including: ... screen sharing"; limitations: rooms and boards send media
over UDP only.
"""

from __future__ import annotations

import pytest

from wire.errors import ProfileRefused
from wire.transports import (
    CONTENT_LADDER,
    LADDER,
    RUNGS_BY_NAME,
    DeviceProfile,
    RungName,
    Transport,
    check_content,
    content_plan,
    rung,
)

EVERY_RUNG = [r.value for r in RungName]


def test_content_goes_on_tcp_5004_then_33434_then_tls_then_the_proxy() -> None:
    assert [r.name for r in CONTENT_LADDER] == [
        RungName.TCP_5004, RungName.TCP_33434, RungName.TLS_443, RungName.HTTP_PROXY]
    assert all(r.transport is not Transport.UDP for r in CONTENT_LADDER)
    assert [r.default_port for r in CONTENT_LADDER] == [5004, 33434, 443, 443]


def test_tcp_33434_is_a_known_rung_but_not_on_the_media_ladder() -> None:
    """Media's ladder is unchanged; tcp/33434 is named once, for content."""
    assert rung("tcp/33434") is RUNGS_BY_NAME[RungName.TCP_33434]
    assert RungName.TCP_33434 not in [r.name for r in LADDER]
    assert RUNGS_BY_NAME[RungName.TCP_33434].penalty_ms > RUNGS_BY_NAME[
        RungName.TCP_5004].penalty_ms  # "may experience throttling in some ISP networks"


def test_a_desktop_gets_the_whole_content_ladder_the_proxy_through_tls() -> None:
    plan = content_plan(DeviceProfile.DESKTOP, EVERY_RUNG[:-1])  # no "http-proxy" offered
    assert [r.name for r in plan] == [r.name for r in CONTENT_LADDER]


def test_udp_rungs_never_carry_content() -> None:
    with pytest.raises(ProfileRefused) as caught:
        content_plan(DeviceProfile.DESKTOP, ["udp/5004", "udp/33434"])
    assert str(caught.value) == (
        "the node offers no content transport desktop devices may use (udp/33434, udp/5004);"
        " content needs one of tcp/5004, tcp/33434, tls/443, http-proxy")


def test_a_mobile_device_shares_over_tcp_only() -> None:
    """FNR: "The Cisco Spark app on mobile devices supports only TCP fallback"."""
    plan = content_plan(DeviceProfile.MOBILE, EVERY_RUNG)
    assert [r.name for r in plan] == [RungName.TCP_5004, RungName.TCP_33434]


@pytest.mark.parametrize("profile", [DeviceProfile.ROOM, DeviceProfile.BOARD])
def test_udp_only_devices_cannot_present_or_receive_and_are_told_why(
        profile: DeviceProfile) -> None:
    with pytest.raises(ProfileRefused) as caught:
        check_content(profile)
    assert str(caught.value) == (
        f"{profile.value} devices cannot present or receive shared content: content travels"
        f" over TCP, TLS or an HTTP proxy, and {profile.value} devices send media over UDP"
        " only; share from a desktop or mobile client")
    with pytest.raises(ProfileRefused):
        content_plan(profile, EVERY_RUNG)


def test_desktop_and_mobile_may_share() -> None:
    check_content(DeviceProfile.DESKTOP)
    check_content(DeviceProfile.MOBILE)
