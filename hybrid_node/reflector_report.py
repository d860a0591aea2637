"""The reflector's verdicts, its table and the firewall rules it asks for: no I/O.

``pinhole-hybrid-node reflector check`` runs from where a hybrid node will live, before it
is enrolled (:mod:`hybrid_node.reflector` does the I/O). Each check is one row: what it
tried, ``pass``/``fail``/``skipped``, what it saw. Each failure names the rule to add to
the enterprise firewall, in words and as an nftables command, as ``pinhole netcheck`` does
for a client. What the node needs (requirements page, "Cisco Hybrid Services"): HTTPS 443
to the cloud for its registration and control channel; "RTP/SRTP over UDP 5004*
33434-33598**" and "RTP/SRTP over TCP 5004*" out to the cloud's media nodes for its
cascades (** "An older port range of 8000 to 8100 is still supported"); and inside, the
clients' media to the node itself: the app's ports, UDP 5004 first, TCP 5004 after.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from edge.boundary import ExitCode

#: source ports tried out of the cascade range: both ends and three between
SAMPLE_SIZE: Final = 5


class Check(enum.StrEnum):
    """What one row tried."""

    CLOUD_TLS = "cloud-tls-443"  # HTTPS to the cloud: registration, control channel
    CASCADE_UDP = "cascade-udp"  # UDP from the cascade source ports to a cloud node's 5004
    CASCADE_TCP = "cascade-tcp-5004"  # TCP 5004 to a cloud node
    CLIENTS_UDP = "clients-udp"  # the enterprise's clients to the node's UDP media port
    CLIENTS_TCP = "clients-tcp"  # ... and to its TCP media port


class Verdict(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIPPED = "skipped"  # not asked for (no --reflector, no --clients-s)


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: Check
    verdict: Verdict
    detail: str


@dataclass(frozen=True, slots=True)
class Where:
    """The addresses the rules name: the node's host, the cloud, the reflector (a cloud
    media node's address), the cascade source ports, the node's media ports; an address
    not known is empty, and its rule names no address."""

    node: str
    cloud: str
    reflector: str
    cascade_ports: range
    udp_port: int = 5004
    tcp_port: int = 5004
    cloud_port: int = 443


@dataclass(frozen=True, slots=True)
class FirewallRule:
    check: Check
    text: str
    nft: str


def sample_ports(ports: range, size: int = SAMPLE_SIZE) -> list[int]:
    """``size`` source ports spread over ``ports``, both ends included (a firewall rule
    that opens only part of the range fails one of them), in order, without repeats."""
    if len(ports) <= size:
        return list(ports)
    last = len(ports) - 1
    return sorted({ports[round(i * last / (size - 1))] for i in range(size)})


def span(ports: range) -> str:
    return f"{ports.start}-{ports.stop - 1}" if len(ports) > 1 else str(ports.start)


def rule_for(check: Check, where: Where) -> FirewallRule:
    """The rule that makes ``check`` pass: what the enterprise firewall must let through."""
    ports = span(where.cascade_ports)
    host = f"the node's host {where.node}" if where.node else "the node's host"
    saddr = f" ip saddr {where.node}" if where.node else ""
    forward = "nft add rule inet filter forward"
    if check is Check.CLOUD_TLS:
        daddr = f" ip daddr {where.cloud}" if where.cloud else ""
        return FirewallRule(check, (
            f"Allow TCP {where.cloud_port} (HTTPS, WSS) from {host} to the cloud"
            f"{' ' + where.cloud if where.cloud else ''}: its registration and control "
            "channel, without TLS inspection."),
            f"{forward}{saddr}{daddr} tcp dport {where.cloud_port} accept")
    if check is Check.CASCADE_UDP:
        return FirewallRule(check, (
            f"Allow UDP from {host}, source ports {ports}, to the cloud's media nodes "
            f"({where.reflector} was tried), UDP port {where.udp_port}: its cascades "
            "(without it they fall back to TCP 5004, then TLS 443)."),
            f"{forward}{saddr} udp sport {ports} udp dport {where.udp_port} accept")
    if check is Check.CASCADE_TCP:
        return FirewallRule(check, (
            f"Allow TCP from {host} to the cloud's media nodes ({where.reflector} was "
            f"tried), TCP port {where.tcp_port}: its cascades' fallback when UDP is "
            "blocked."),
            f"{forward}{saddr} tcp dport {where.tcp_port} accept")
    transport, port = ("udp", where.udp_port) if check is Check.CLIENTS_UDP else (
        "tcp", where.tcp_port)
    daddr = f" ip daddr {where.node}" if where.node else ""
    return FirewallRule(check, (
        f"Allow {transport.upper()} from the enterprise's clients to {host}, "
        f"{transport.upper()} port {port} (on any firewall between them): their media."),
        f"{forward}{daddr} {transport} dport {port} accept")


def rules(results: Sequence[CheckResult], where: Where) -> list[FirewallRule]:
    """One rule per failed check, in the checks' order."""
    return [rule_for(r.check, where) for r in results if r.verdict is Verdict.FAIL]


def exit_code(results: Sequence[CheckResult]) -> ExitCode:
    """The error boundary's scale, as ``pinhole netcheck``'s: 3 the cloud unreachable over
    HTTPS (no registration), 4 no cascade at all (UDP and TCP both failed; TLS 443 is the
    last rung the node tries), 6 anything else failed, 0 all that ran passed."""
    failed = {r.check for r in results if r.verdict is Verdict.FAIL}
    if Check.CLOUD_TLS in failed:
        return ExitCode.NO_CLOUD
    if {Check.CASCADE_UDP, Check.CASCADE_TCP} <= failed:
        return ExitCode.NO_MEDIA
    return ExitCode.DEGRADED if failed else ExitCode.OK


def table(results: Sequence[CheckResult]) -> list[str]:
    """The verdicts, one aligned row each."""
    width = max([len("check"), *(len(r.check) for r in results)])
    lines = [f"{'check':<{width}}  verdict  detail"]
    lines += [f"{r.check:<{width}}  {r.verdict:<7}  {r.detail}" for r in results]
    return lines


def render(results: Sequence[CheckResult], where: Where) -> list[str]:
    """The table, then the rules to add (or that none is needed)."""
    lines = table(results)
    wanted = rules(results, where)
    if not wanted:
        lines.append("nothing to add: every check that ran passed")
        return lines
    lines.append("add to the enterprise firewall:")
    for rule in wanted:
        lines += [f"  - {rule.text}", f"    {rule.nft}"]
    return lines


def as_json(results: Sequence[CheckResult], where: Where) -> dict[str, Any]:
    return {"reflector": {
        "checks": [{"check": r.check.value, "verdict": r.verdict.value, "detail": r.detail}
                   for r in results],
        "rules": [{"check": r.check.value, "text": r.text, "nft": r.nft}
                  for r in rules(results, where)],
        "exit_code": int(exit_code(results))}}
