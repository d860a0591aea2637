"""The hybrid node's settings: the media node's flags plus ``--org`` and ``--cascade-ports``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass

from hybrid_node.dial import HYBRID_PORTS
from media_node.settings import NodeSettings, from_args, parser

PROG = "pinhole-hybrid-node"


@dataclass(frozen=True, slots=True)
class HybridSettings:
    node: NodeSettings  # kind "hybrid", its org, the org's hybrid node secret
    cascade_ports: range = HYBRID_PORTS

    def masked(self) -> dict[str, object]:
        out = self.node.masked()
        out["cascade_ports"] = port_span(self.cascade_ports)
        return out


def port_span(ports: range) -> str:
    return f"{ports.start}-{ports.stop - 1}"


def parse_ports(text: str) -> range:
    """``"33434-33598"`` (or one port) as a range; ValueError with what is wrong."""
    low, _, high = text.strip().partition("-")
    try:
        start, end = int(low), int(high or low)
    except ValueError:
        raise ValueError(f"{text!r} is not a port range like 33434-33598") from None
    if not 1 <= start <= end <= 65535:
        raise ValueError(f"{text!r}: ports must be 1-65535, the first not above the last")
    return range(start, end + 1)


def _env(name: str, default: str) -> str:
    return os.environ.get("PINHOLE_" + name.upper(), default)


def build_parser() -> argparse.ArgumentParser:
    p = parser(PROG, "hybrid", description=(
        "Pinhole hybrid media node: a media node for one organisation, installed inside its "
        "network (even behind NAT). It only connects outward: registration and its control "
        "WebSocket to the cloud over HTTPS/WSS 443, and every cascade to a cloud node from a "
        "UDP source port in --cascade-ports to UDP 5004, then TCP 5004, then TLS 443. Every "
        "flag also reads PINHOLE_<FLAG> from the environment (e.g. PINHOLE_ORG)."))
    p.add_argument("--org", default=_env("org", ""),
                   help="the organisation this node serves; only its devices see and use it")
    p.add_argument("--cascade-ports", default=_env("cascade_ports", port_span(HYBRID_PORTS)),
                   help="UDP source ports of cascades to the cloud (seed: 33434-33598; the "
                   "older 8000-8100 also works)")
    p.set_defaults(region=_env("region", "on-prem"))
    for action in p._actions:  # the secret here is the org's hybrid node secret
        if action.dest == "node_secret_file":
            action.help = "read the org's hybrid node secret from this file"
    return p


def parse(argv: Sequence[str] | None = None) -> HybridSettings:
    p = build_parser()
    a = p.parse_args(argv)
    if not a.org:
        p.error("--org ORG is required (or PINHOLE_ORG): a hybrid node serves one organisation")
    try:
        ports = parse_ports(a.cascade_ports)
    except ValueError as exc:
        p.error(f"--cascade-ports {exc}")
    node = from_args(a, p, prog=PROG, kind="hybrid", org=a.org)
    if not node.node_secret:
        p.error("--node-secret-file FILE is required (or PINHOLE_NODE_SECRET_FILE): the "
                "org's hybrid node secret, from the cloud's organisation settings")
    return HybridSettings(node=node, cascade_ports=ports)


__all__ = ["HybridSettings", "build_parser", "parse", "parse_ports", "port_span"]
