"""netcheck's advice follows the seeds' order for what is blocked."""

from __future__ import annotations

from client.netcheck import RULES, summarise
from client.probe import ProbeOutcome, ProbeTarget
from wire.address import Address
from wire.transports import DeviceProfile


def _outcome(rung: str, rtt: float | None, node: str = "n1") -> ProbeOutcome:
    target = ProbeTarget(node, rung, rung.split("/")[0], Address("192.0.2.1", 1))
    return ProbeOutcome(target, rtt, None, None if rtt else "no answer")


def test_blocked_udp_recommends_udp_5004_first_and_media_falls_to_tcp() -> None:
    """Seed: "we recommend that your firewall allows inside-initiated UDP connections to
    port 5004 ... it can fall back to ... TCP port 5004 and TLS port 443"."""
    outcomes = [_outcome("udp/5004", None), _outcome("udp/33434", None),
                _outcome("tcp/5004", 12.0), _outcome("tls/443", 13.0)]
    report = summarise(outcomes, DeviceProfile.DESKTOP, https=(True, None), wss=(True, None),
                       proxy_configured=False)
    assert report.media_transport == "tcp/5004"
    assert report.rules == (RULES["udp/5004"], RULES["udp/33434"])


def test_only_a_proxy_left() -> None:
    outcomes = [_outcome(r, None) for r in ("udp/5004", "udp/33434", "tcp/5004", "tls/443")]
    report = summarise(outcomes, DeviceProfile.DESKTOP, https=(True, None), wss=(True, None),
                       proxy_configured=True)
    assert report.media_transport == "http-proxy"
    assert report.rules[0] == RULES["udp/5004"]


def test_room_device_never_falls_to_a_proxy() -> None:
    """Seed: room devices send only signaling through the HTTP proxy, never media."""
    outcomes = [_outcome(r, None) for r in ("udp/5004", "udp/33434")]
    report = summarise(outcomes, DeviceProfile.ROOM, https=(True, None), wss=(True, None),
                       proxy_configured=True)
    assert report.media_transport is None
