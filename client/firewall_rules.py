"""The firewall rules ``pinhole netcheck`` asks an administrator to open, for people and for nft.

The order is the seeds' own, best first: "we recommend that your firewall allows
inside-initiated UDP connections to port 5004" to any media node; "If the ... app fails to
connect on UDP, it can fall back to traverse a firewall using TCP port 5004 and TLS port 443
as well, but the media quality might suffer"; HTTPS inspection must not touch the service's
connections; UDP 33434 "can be used as a last resort, we suggest that you do not open port
33434 for media". Signaling (HTTPS and WSS to the cloud, port 443) comes before all of them:
without it there is no meeting at all.

Each rule is written three ways: a sentence for the administrator, nftables commands and
iptables commands. The command forms assume the enterprise firewall forwards the clients'
traffic through an ``inet filter`` table's ``forward`` chain (nft) or the ``FORWARD`` chain
(iptables) and lets established replies back; they are a starting point to adapt.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from wire.transports import RUNGS_BY_NAME, RungName, Transport


class RuleFormat(enum.StrEnum):
    TEXT = "text"
    NFT = "nft"
    IPTABLES = "iptables"


@dataclass(frozen=True, slots=True)
class Rule:
    """One thing to open: why, and where to (``to`` is empty for 'any address')."""

    key: str  # "signaling", "wss", "inspection", or the media rung (a RungName)
    text: str
    protocol: str  # "udp" | "tcp" | "" (nothing to open: advice only)
    port: int
    to: tuple[str, ...] = ()
    recommended: bool = True


def _addresses(to: Sequence[str]) -> str:
    return ", ".join(to) if to else "any address"


def signaling(cloud_host: str, addresses: Sequence[str], port: int) -> Rule:
    where = cloud_host if list(addresses) in ([], [cloud_host]) else (
        f"{cloud_host} ({_addresses(addresses)})")
    return Rule("signaling",
                f"Allow HTTPS from the clients to the cloud, {where}, TCP port {port}, "
                "directly or through your HTTP "
                "proxy: registration, meetings and notifications need it.",
                "tcp", port, tuple(addresses))


def websocket(cloud_host: str, port: int) -> Rule:
    return Rule("wss",
                f"Let WebSocket connections (HTTP Upgrade over TLS) to {cloud_host}:{port} "
                "through the proxy or firewall: the clients' notifications use them.",
                "", port)


def inspection(hosts: Sequence[str]) -> Rule:
    return Rule("inspection",
                "Exempt these from HTTPS/TLS inspection (the clients check the service's "
                f"certificates and refuse re-signed ones): {', '.join(hosts)}.", "", 443)


@dataclass(frozen=True, slots=True)
class MediaRule:
    """What to open for one blocked media rung: the sentence (``{port}``, ``{nodes}``
    filled in), whether the command names the media nodes, whether it is recommended."""

    text: str
    to_nodes: bool
    recommended: bool = True


#: One row per rung a firewall can open, in the administrator's words.
MEDIA_RULES: Final[dict[RungName, MediaRule]] = {
    RungName.UDP_5004: MediaRule(
        "Allow inside-initiated UDP from the clients to any address, destination port {port}, "
        "and its replies: the recommended media path and the best quality (media nodes "
        "change; do not restrict the addresses).", to_nodes=False),
    RungName.UDP_9000: MediaRule(
        "Allow inside-initiated UDP to the legacy media data centers ({nodes}), destination "
        "port {port}.", to_nodes=True),
    RungName.TCP_5004: MediaRule(
        "If UDP cannot be opened: allow inside-initiated TCP to the media nodes ({nodes}), "
        "destination port {port}; media quality may suffer over TCP.", to_nodes=True),
    RungName.TLS_443: MediaRule(
        "If neither UDP nor TCP 5004 can be opened: allow inside-initiated TCP to the media "
        "nodes ({nodes}), destination port {port}, without TLS inspection.", to_nodes=True),
    RungName.UDP_33434: MediaRule(
        "UDP port {port} is a last resort only: it is the traceroute port and some ISPs "
        "throttle it. It is not recommended to open it for media.", to_nodes=False,
        recommended=False),
    RungName.TCP_33434: MediaRule(
        "TCP port {port} carries screen sharing only when TCP 5004 is blocked (the seeds' "
        "'Screen Sharing (in app) TCP 5004* 33434'): open TCP 5004 to the media nodes "
        "({nodes}) instead.", to_nodes=True, recommended=False),
}

#: The IP protocol a firewall matches for each media transport (TLS runs over TCP).
IP_PROTOCOL: Final[dict[Transport, str]] = {
    Transport.UDP: "udp", Transport.TCP: "tcp", Transport.TLS: "tcp"}


def media(rung: RungName, nodes: Sequence[str], port: int) -> Rule:
    """The rule for a blocked media rung, in the administrator's words."""
    row = MEDIA_RULES.get(rung)
    if row is None:
        raise ValueError(f"no firewall rule for rung {rung.value!r}")
    return Rule(rung, row.text.format(port=port, nodes=_addresses(nodes)),
                IP_PROTOCOL[RUNGS_BY_NAME[rung].transport], port,
                tuple(nodes) if row.to_nodes else (), recommended=row.recommended)


def _nft(rule: Rule) -> list[str]:
    if not rule.protocol:
        return []
    match = f"{rule.protocol} dport {rule.port}"
    if rule.to:
        match = f"ip daddr {{ {', '.join(rule.to)} }} " + match
    return [f"nft add rule inet filter forward {match} ct state new accept"]


def _iptables(rule: Rule) -> list[str]:
    if not rule.protocol:
        return []
    destination = f" -d {','.join(rule.to)}" if rule.to else ""
    return [f"iptables -A FORWARD -p {rule.protocol}{destination} --dport {rule.port} "
            "-m conntrack --ctstate NEW -j ACCEPT"]


def render(rules: Sequence[Rule], form: RuleFormat) -> list[str]:
    """The lines to print: numbered sentences, or commands each under its sentence as a
    comment. A rule that is not recommended is a note, never a command."""
    if form is RuleFormat.TEXT:
        return [f"{i}. {r.text}" for i, r in enumerate(rules, 1)]
    replies = ("nft add rule inet filter forward ct state established,related accept"
               if form is RuleFormat.NFT else
               "iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
    lines = ["# the replies to inside-initiated connections", replies]
    for i, r in enumerate(rules, 1):
        lines.append(f"# {i}. {r.text}")
        if r.recommended:
            lines += _nft(r) if form is RuleFormat.NFT else _iptables(r)
    return lines
