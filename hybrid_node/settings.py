"""The hybrid node's settings: the media node's flags plus ``--org`` and ``--cascade-ports``.

One :class:`~media_node.settings.NodeSettings` (kind ``hybrid``, its org, the
org's hybrid node secret, the cascade source ports), from flags and
``PINHOLE_*`` variables like every other service's.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from edge.boundary import usage
from edge.flags import Number, add_settings, apply_environment, setting, settings_from
from edge.http_proxy import ProxyConfig, ProxyError
from hybrid_node.dial import HYBRID_PORTS
from media_node.settings import NodeSettings, from_args, parser

PROG = "pinhole-hybrid-node"
#: the cloud's ``Id`` (``wire.models``): what a cluster may be called
CLUSTER_NAME: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def port_span(ports: range) -> str:
    return f"{ports.start}-{ports.stop - 1}"


def parse_ports(text: str) -> range:
    """``"33434-33598"`` (or one port) as a range; ValueError saying what is wrong."""
    low, _, high = text.strip().partition("-")
    try:
        start, end = int(low), int(high or low)
    except ValueError:
        raise ValueError(f"{text!r} is not a port range like 33434-33598") from None
    if not 1 <= start <= end <= 65535:
        raise ValueError(f"{text!r}: ports must be 1-65535, the first not above the last")
    return range(start, end + 1)


class PortRange:
    """An argparse ``type``: :func:`parse_ports`, its ValueError as argparse's error."""

    __name__ = "port range"

    def __call__(self, text: str) -> range:
        try:
            return parse_ports(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None


class ClusterName:
    """An argparse ``type``: a cluster name as the cloud takes it (an id: letters, digits,
    ``_ . : -``, at most 64); empty, the default, is a cluster of the node's own."""

    __name__ = "cluster name"

    def __call__(self, text: str) -> str:
        if text and not CLUSTER_NAME.fullmatch(text):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a cluster name: 1-64 letters, digits, '_', '.', ':' or '-'")
        return text


@dataclass(frozen=True, slots=True)
class HybridFlags:
    """What a hybrid node's command adds to the media node's flags; its settings are one
    :class:`~media_node.settings.NodeSettings` holding these."""

    org: str = setting("", "the organisation this node serves; only its devices see and use "
                       "it")
    cascade_ports: range = setting(HYBRID_PORTS, "UDP source ports of cascades to the cloud "
                                   "(the standard 33434-33598; the older 8000-8100 also works)",
                                   type=PortRange(), show=port_span)
    cluster: str = setting("", "the cluster of the org's nodes this one belongs to (one site's "
                           "nodes): a meeting overflows from a full node to another node of "
                           "its cluster, and to the cloud only when the whole cluster is full "
                           "(default: a cluster of its own)", type=ClusterName())
    overflow_rtt_ms: float = setting(250.0, "a device whose STUN round trip to this cluster "
                                     "is at least this many ms is placed on the cloud",
                                     type=Number(float, 0, 60_000, above=True))
    proxy: str = setting("", "HTTP proxy for the node's signalling to the cloud (registration "
                         "and control channel), http://[user:password@]host:port: Basic, "
                         "Digest, NTLM or Negotiate, as the proxy asks; media never goes "
                         "through it", masked=True)


#: a hybrid node's defaults: it runs on the organisation's premises
DEFAULTS = NodeSettings(kind="hybrid", region="on-prem", prog=PROG)


def build_parser() -> argparse.ArgumentParser:
    p = parser(PROG, "hybrid", description=(
        "Pinhole hybrid media node: a media node for one organisation, installed inside its "
        "network (even behind NAT). It only connects outward: registration and its control "
        "WebSocket to the cloud over HTTPS/WSS 443, and every cascade to a cloud node from a "
        "UDP source port in --cascade-ports to UDP 5004, then TCP 5004, then TLS 443 (a "
        "cascade to another node of its --cluster stays on the premises). Every "
        "flag also reads PINHOLE_<FLAG> from the environment (e.g. PINHOLE_ORG, "
        "PINHOLE_NODE_SECRET_FILE).\n\nExit codes: 0 stopped, 1 other failure, 2 usage (a "
        "flag or a file it names), 3 cannot reach the cloud, 5 the cloud's certificate did "
        "not verify.\n\nBefore enrolling a node, check its network from where it will live: "
        f"'{PROG} reflector --help'."), defaults=DEFAULTS)
    add_settings(p, HybridFlags)
    for action in p._actions:  # here the secret is the org's hybrid node secret
        if action.dest == "node_secret_file":
            action.help = "read the org's hybrid node secret from this file"
    return p


def parse(argv: Sequence[str] | None = None) -> NodeSettings:
    p = build_parser()
    apply_environment(p, os.environ)
    a = p.parse_args(argv)
    hybrid = settings_from(HybridFlags, a)
    if not hybrid.org:
        raise usage("--org ORG is required: a hybrid node serves one organisation",
                    "pass --org ORG (or set PINHOLE_ORG)")
    try:
        proxy = ProxyConfig.from_url(hybrid.proxy) if hybrid.proxy else None
    except ProxyError as exc:
        raise usage(f"--proxy: {exc}", "give --proxy http://[user:password@]host:port "
                    "(or set PINHOLE_PROXY)") from None
    settings = from_args(a, p, prog=PROG, kind="hybrid", org=hybrid.org,
                         cascade_ports=hybrid.cascade_ports, cluster=hybrid.cluster,
                         overflow_rtt_ms=hybrid.overflow_rtt_ms, proxy=proxy)
    if not settings.node_secret:
        raise usage("the org's hybrid node secret is missing",
                    "pass --node-secret-file FILE (or set PINHOLE_NODE_SECRET_FILE)")
    return settings
