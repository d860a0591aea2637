"""netcheck's verdict, exit status and rules, on tables (no network).

Pins down the defects found in the proxy-only and no-udp labs: every UDP rung blocked exited
0, and the rules showed operators internal words ("seed: 'our recommended solution'"). The
rules follow the seeds' order: "we recommend that your firewall allows inside-initiated UDP
connections to port 5004", then "TCP port 5004 and TLS port 443 as well, but the media
quality might suffer", and UDP 33434 only "as a last resort".
"""

from __future__ import annotations

from client.firewall_rules import RuleFormat, render
from client.netcheck import Check, Report, Status, Verdict, assess
from client.probe import ProbeOutcome, ProbeTarget
from edge.boundary import ExitCode
from wire.address import Address
from wire.transports import RUNGS_BY_NAME, DeviceProfile, RungName

NODES = {"n1": "192.0.2.1", "n2": "192.0.2.2"}
PORTS = {"udp/5004": 5004, "udp/33434": 33434, "tcp/5004": 5004, "tls/443": 443,
         "http-proxy": 443}


def _outcome(rung: str, rtt: float | None, node: str = "n1") -> ProbeOutcome:
    name = RungName(rung)
    target = ProbeTarget(node, name, RUNGS_BY_NAME[name].transport,
                         Address(NODES[node], PORTS[rung]))
    return ProbeOutcome(target, rtt, None, None if rtt else "no answer")


def _cloud(https: Status = Status.OK, wss: Status = Status.OK) -> list[Check]:
    return [Check("cloud", "TCP", "cloud:443", Status.OK if https is Status.OK else https),
            Check("cloud", "HTTPS", "cloud:443", https), Check("cloud", "WSS", "cloud:443", wss)]


def _assess(outcomes: list[ProbeOutcome], checks: list[Check] | None = None,
            profile: DeviceProfile = DeviceProfile.DESKTOP) -> Report:
    return assess(checks if checks is not None else _cloud(), outcomes, profile,
                  cloud_host="cloud.example", cloud_addresses=["198.51.100.1"], cloud_port=443,
                  nodes=[])


def _ladder(working: set[str], nodes: tuple[str, ...] = ("n1", "n2")) -> list[ProbeOutcome]:
    return [_outcome(r, 10.0 if r in working else None, n)
            for n in nodes for r in ("udp/5004", "udp/33434", "tcp/5004", "tls/443")]


def test_open_network_is_all_good_with_nothing_to_open() -> None:
    report = _assess(_ladder({"udp/5004", "udp/33434", "tcp/5004", "tls/443"}))
    assert (report.verdict, report.media_rung, report.rules) == (Verdict.GOOD, "udp/5004", ())


def test_udp_blocked_is_degraded_and_udp_5004_comes_first() -> None:
    """The no-udp lab: media falls to tcp/5004, exit 1; open UDP 5004 first, then the last
    resort 33434 only as a note (not recommended, no command)."""
    report = _assess(_ladder({"tcp/5004", "tls/443"}))
    assert (report.verdict, report.media_rung) == (Verdict.DEGRADED, "tcp/5004")
    assert [r.key for r in report.rules] == ["udp/5004", "udp/33434"]
    assert [r.recommended for r in report.rules] == [True, False]
    assert report.rules[0].to == ()  # "to ANY": media nodes change


def test_every_rung_blocked_is_no_media_not_success() -> None:
    """The defect: all UDP (and everything else) blocked exited 0."""
    report = _assess(_ladder(set()))
    assert (report.verdict, report.media_rung) == (Verdict.NO_MEDIA, None)
    assert [r.key for r in report.rules] == ["udp/5004", "tcp/5004", "tls/443", "udp/33434"]
    assert report.rules[1].to == ("192.0.2.1", "192.0.2.2")


def test_only_the_proxy_left_is_degraded_with_a_hint() -> None:
    outcomes = [*_ladder(set()), _outcome("http-proxy", 30.0)]
    report = _assess([*outcomes, _outcome("http-proxy", 31.0, "n2")])
    assert (report.verdict, report.media_rung) == (Verdict.DEGRADED, "http-proxy")
    assert any("HTTP proxy" in h for h in report.hints)


def test_no_signaling_wins_over_media_and_asks_for_https_first() -> None:
    """Signaling blocked: exit 3 even though the nodes (probed from the cached list) answer;
    the first rule is HTTPS to the cloud, and the operator is told about --proxy."""
    checks = _cloud(https=Status.SKIPPED, wss=Status.SKIPPED)
    checks[0] = Check("cloud", "TCP", "cloud:443", Status.BLOCKED, "no answer")
    report = _assess(_ladder({"tcp/5004"}), checks)
    assert report.verdict is Verdict.NO_SIGNALING and report.media_rung == "tcp/5004"
    assert report.rules[0].key == "signaling" and report.rules[0].to == ("198.51.100.1",)
    assert any("--proxy" in h for h in report.hints)


def test_blocked_notifications_are_degraded() -> None:
    report = _assess(_ladder({"udp/5004"}), _cloud(wss=Status.BLOCKED))
    assert report.verdict is Verdict.DEGRADED and report.rules[0].key == "wss"


def test_tls_inspection_asks_for_an_exemption() -> None:
    checks = [*_cloud(), Check("cloud", "TLS inspection", "cloud:443", Status.BLOCKED)]
    report = _assess(_ladder({"udp/5004"}), checks)
    assert [r.key for r in report.rules] == ["inspection"]
    assert "cloud.example" in report.rules[0].text


def test_room_device_never_falls_to_a_proxy_or_tcp() -> None:
    """Seed: room devices use UDP only and send only signaling through an HTTP proxy."""
    outcomes = [_outcome("udp/5004", None), _outcome("udp/33434", None)]
    report = _assess(outcomes, profile=DeviceProfile.ROOM)
    assert (report.verdict, report.media_rung) == (Verdict.NO_MEDIA, None)
    assert {r.key for r in report.rules} == {"udp/5004", "udp/33434"}


def test_rules_speak_to_operators_in_every_format() -> None:
    """No internal words ("seed:") in what an operator reads; ready nft/iptables lines."""
    report = _assess(_ladder(set()))
    text = render(report.rules, RuleFormat.TEXT)
    nft = render(report.rules, RuleFormat.NFT)
    ipt = render(report.rules, RuleFormat.IPTABLES)
    for line in text + nft + ipt:
        assert "seed" not in line.lower() and "WP:" not in line
    assert text[0].startswith("1. Allow inside-initiated UDP") and "5004" in text[0]
    assert "nft add rule inet filter forward udp dport 5004 ct state new accept" in nft
    assert ("nft add rule inet filter forward ip daddr { 192.0.2.1, 192.0.2.2 } tcp dport 5004 "
            "ct state new accept") in nft
    assert ("iptables -A FORWARD -p tcp -d 192.0.2.1,192.0.2.2 --dport 443 -m conntrack "
            "--ctstate NEW -j ACCEPT") in ipt
    assert not any("33434" in line for line in nft if not line.startswith("#"))
    assert not any("33434" in line for line in ipt if not line.startswith("#"))


def test_verdicts_share_the_clis_exit_scale() -> None:
    """The defect it pins down: netcheck exited 2 for "no media path", the code every
    other command (and argparse) gives a usage error, and 1 for "degraded", the code of
    any other failure; "no media" was 4 everywhere else. A script could not tell them
    apart. Now one scale (edge.boundary.ExitCode)."""
    assert {int(v) for v in Verdict}.isdisjoint({ExitCode.OTHER, ExitCode.USAGE})
    pairs = [(Verdict.GOOD, ExitCode.OK), (Verdict.DEGRADED, ExitCode.DEGRADED),
             (Verdict.NO_MEDIA, ExitCode.NO_MEDIA), (Verdict.NO_SIGNALING, ExitCode.NO_CLOUD)]
    assert all(int(verdict) == int(code) for verdict, code in pairs)
