"""The reflector's verdicts, rules and table (``hybrid_node.reflector_report``), and its
responder's answers without sockets.

What a hybrid node needs, from the requirements page ("Cisco Hybrid Services"): HTTPS 443
to the cloud; "RTP/SRTP over UDP 5004* 33434-33598**" and "RTP/SRTP over TCP 5004*" out to
the cloud's media nodes (** "An older port range of 8000 to 8100 is still supported"); the
clients' media in to the node.
"""

from __future__ import annotations

import json

import pytest

from edge.boundary import ExitCode
from hybrid_node.dial import HYBRID_PORTS, LEGACY_HYBRID_PORTS
from hybrid_node.reflector import SOFTWARE, Reflector
from hybrid_node.reflector_report import (
    Check,
    CheckResult,
    Verdict,
    Where,
    as_json,
    exit_code,
    render,
    rule_for,
    rules,
    sample_ports,
)
from wire.address import Address
from wire.stun import build_discovery_probe, build_leg_binding, parse_binding_response

WHERE = Where(node="10.99.0.4", cloud="198.18.0.1", reflector="198.18.0.1",
              cascade_ports=HYBRID_PORTS)


def results(**verdicts: Verdict) -> list[CheckResult]:
    return [CheckResult(c, verdicts.get(c.name.lower(), Verdict.PASS), "…") for c in Check]


@pytest.mark.parametrize(("ports", "sample"), [
    (HYBRID_PORTS, [33434, 33475, 33516, 33557, 33598]),
    (LEGACY_HYBRID_PORTS, [8000, 8025, 8050, 8075, 8100]),
    (range(5004, 5007), [5004, 5005, 5006]),
])
def test_the_sample_covers_both_ends_of_the_range(ports: range, sample: list[int]) -> None:
    """A rule that opens only part of the range (33434-33500, say) fails the top port."""
    assert sample_ports(ports) == sample


@pytest.mark.parametrize(("check", "nft"), [
    (Check.CLOUD_TLS, "ip saddr 10.99.0.4 ip daddr 198.18.0.1 tcp dport 443 accept"),
    (Check.CASCADE_UDP, "ip saddr 10.99.0.4 udp sport 33434-33598 udp dport 5004 accept"),
    (Check.CASCADE_TCP, "ip saddr 10.99.0.4 tcp dport 5004 accept"),
    (Check.CLIENTS_UDP, "ip daddr 10.99.0.4 udp dport 5004 accept"),
    (Check.CLIENTS_TCP, "ip daddr 10.99.0.4 tcp dport 5004 accept"),
])
def test_each_failed_check_names_the_rule_to_add(check: Check, nft: str) -> None:
    rule = rule_for(check, WHERE)
    assert rule.nft == "nft add rule inet filter forward " + nft
    assert "10.99.0.4" in rule.text


def test_the_older_range_and_an_unknown_host_are_named_as_they_are() -> None:
    where = Where(node="", cloud="", reflector="r", cascade_ports=LEGACY_HYBRID_PORTS)
    rule = rule_for(Check.CASCADE_UDP, where)
    assert rule.nft == "nft add rule inet filter forward udp sport 8000-8100 udp dport 5004 " \
                       "accept"
    assert "source ports 8000-8100" in rule.text


@pytest.mark.parametrize(("failed", "code"), [
    ({}, ExitCode.OK),
    ({"cascade_udp": Verdict.FAIL}, ExitCode.DEGRADED),  # TCP 5004, then TLS 443 carry it
    ({"clients_tcp": Verdict.FAIL}, ExitCode.DEGRADED),
    ({"cascade_udp": Verdict.FAIL, "cascade_tcp": Verdict.FAIL}, ExitCode.NO_MEDIA),
    ({"cloud_tls": Verdict.FAIL, "cascade_udp": Verdict.FAIL}, ExitCode.NO_CLOUD),
    ({"clients_udp": Verdict.SKIPPED, "clients_tcp": Verdict.SKIPPED}, ExitCode.OK),
])
def test_the_exit_status_is_the_verdict(failed: dict[str, Verdict], code: ExitCode) -> None:
    assert exit_code(results(**failed)) is code


def test_the_table_then_the_rules_in_the_checks_order() -> None:
    run = results(cascade_udp=Verdict.FAIL, clients_udp=Verdict.FAIL)
    lines = render(run, WHERE)
    assert lines[0].split() == ["check", "verdict", "detail"]
    assert lines[2].split()[:2] == ["cascade-udp", "fail"]
    at = lines.index("add to the enterprise firewall:")
    assert [line.strip() for line in lines[at + 1:] if line.startswith("    nft")] == [
        r.nft for r in rules(run, WHERE)]
    assert [r.check for r in rules(run, WHERE)] == [Check.CASCADE_UDP, Check.CLIENTS_UDP]
    assert render(results(), WHERE)[-1] == "nothing to add: every check that ran passed"


def test_json_has_checks_rules_and_the_exit_code() -> None:
    document = json.loads(json.dumps(as_json(results(cascade_tcp=Verdict.FAIL), WHERE)))
    body = document["reflector"]
    assert [c["check"] for c in body["checks"]] == [c.value for c in Check]
    assert [r["check"] for r in body["rules"]] == ["cascade-tcp-5004"]
    assert body["exit_code"] == ExitCode.DEGRADED


def test_the_reflector_answers_a_probe_with_where_it_came_from() -> None:
    """RFC 8489 §14.2: XOR-MAPPED-ADDRESS is the request's source as the server saw it."""
    reflector = Reflector()
    request = build_discovery_probe()
    answer = reflector.answer(request, Address("198.18.0.254", 33500))
    assert answer is not None and len(answer) <= 2 * len(request)  # no amplification
    parsed = parse_binding_response(answer)
    assert parsed.mapped == Address("198.18.0.254", 33500)
    assert parsed.transaction_id == request[8:20]
    assert parsed.software in (None, SOFTWARE)


# named: a leg's check carries a random transaction id, and pytest-xdist's workers must
# each collect the same test names
@pytest.mark.parametrize("data", [
    b"", b"\x80" + bytes(40), bytes(20),
    build_leg_binding("nodexxxx", "clientxx", b"p" * 24),  # a leg's check: not a probe
], ids=["empty", "not-stun", "zeros", "a-legs-check"])
def test_anything_but_a_bare_probe_is_dropped_and_counted(data: bytes) -> None:
    reflector = Reflector()
    assert reflector.answer(data, Address("192.0.2.1", 1)) is None
    assert (reflector.answered, reflector.dropped) == (0, 1)
