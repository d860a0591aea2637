"""The media node's settings: one frozen object from flags and ``PINHOLE_*`` variables."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from edge.admission import ConnectionLimits
from edge.boundary import readable_file, usage
from edge.flags import (
    PORT,
    Number,
    Parser,
    add_settings,
    add_version,
    apply_environment,
    count,
    group,
    masked,
    rate,
    seconds,
    setting,
    settings_from,
)
from edge.http_proxy import ProxyConfig

#: a media node's TCP/TLS connection limits: the type's own defaults
NODE_LIMITS = ConnectionLimits()


@dataclass(frozen=True, slots=True)
class NodeSettings:
    cloud: str = setting("", "the cloud's base URL")  # e.g. https://cloud.example:443
    # the CA the cloud's certificate chains to ("" = system store)
    ca: str = setting("", "CA file for the cloud's certificate")
    node_secret: str = setting("", "the secret presented to the cloud when registering",
                               secret=True)
    node_id: str = setting("", "stable node id (default: a new node-<10 hex> at each start)")
    kind: str = "cloud"  # "cloud" or "hybrid"
    org: str = ""  # a hybrid node's organisation
    region: str = setting("default", "region name")
    advertise: str = setting("127.0.0.1", "IP address clients reach this node on (published "
                             "in the node list)")
    listen: str = setting("", "address to bind (default: the advertised address)")
    # seed: "UDP 5004 ... preferred"; "UDP 33434 ... last resort"; 9000 for legacy-dc nodes
    udp_port: int = setting(5004, "preferred UDP media port", type=PORT)
    udp_last_resort_port: int = setting(33434, "last-resort UDP port", type=PORT)
    legacy_dc: bool = setting(False, "node in the legacy data-center ranges: also listen on "
                              "UDP 9000")
    legacy_port: int = setting(9000, "legacy UDP port", type=PORT)
    # seed: "TCP port 5004 ... if UDP is blocked"
    tcp_port: int = setting(5004, "TCP media port, RFC 4571 framing", type=PORT)
    # seed (FNR ports table): "Screen Sharing (in app) TCP 5004* 33434": content's second rung
    tcp_last_resort_port: int = setting(
        33434, "last-resort TCP port for content (screen sharing), RFC 4571 framing; a node "
        "that cannot bind it serves content on TCP 5004 and TLS only", type=PORT)
    # seed: "TLS port 443"; 8443 when this process may not bind below 1024
    tls_port: int = setting(443, "TLS media port (8443 when it may not bind below 1024)",
                            type=PORT)
    udp: bool = setting(True, "do not listen on UDP", negate=True)
    tcp: bool = setting(True, "do not listen on TCP", negate=True)
    tls: bool = setting(True, "do not listen on TLS", negate=True)
    cert: str = setting("", "PEM certificate for TLS (default: a self-signed one made at "
                        "start)")
    key: str = setting("", "PEM private key for --cert")
    capacity: int = setting(1000, "legs this node accepts", type=count())
    stun_rate: float = setting(20.0, "unauthenticated STUN requests per second per flow: "
                               "source IP and port, or one TCP/TLS connection (0: no limit)",
                               type=rate())
    stun_burst: float = setting(40.0, "burst of unauthenticated STUN requests per flow",
                                type=rate())
    stun_ip_rate: float = setting(1000.0, "ceiling per source IP over all its flows: an office "
                                  "behind one NAT address shares it (size it for the office: "
                                  "see the ops notes)", type=rate())
    stun_ip_burst: float = setting(4000.0, "burst of the per-source-IP ceiling", type=rate())
    limits: ConnectionLimits = group(NODE_LIMITS, help={
        "max_connections": "open TCP/TLS media connections this node accepts in total",
        "max_connections_per_source": "open TCP/TLS media connections from one IP address "
        "(an office NAT counts once: one per participant using TCP/TLS behind it)",
        "first_message_s": "close a TCP/TLS connection whose first whole frame takes longer",
        "idle_s": "close a TCP/TLS connection without a whole frame for this long (consent "
        "keepalives come every ~5 s)"})
    # RFC 7675 §5.1: consent expires 30 s after the last response
    consent_s: float = setting(30.0, "stop sending on a leg this long after its last consent "
                               "(RFC 7675: 30)", type=seconds())
    consent_check_s: float = setting(4.0, "send consent checks on cascade legs about this "
                                     "often, randomized ±20%% (RFC 7675 §5.1; 4 s: a pinhole "
                                     "that closes after 5 s idle holds)", type=seconds())
    leg_timeout_s: float = setting(90.0, "free a leg after this long without consent",
                                   type=seconds())
    simulated_rtt_ms: float = setting(0.0, "simulation knob: delay every reply and forwarded "
                                      "packet by N ms, standing in for distance",
                                      type=Number(float, 0, 10_000))
    metrics_listen: str = setting("", "HOST:PORT for Prometheus /metrics and /healthz (plain "
                                  "HTTP)")
    state_file: str = setting("", "write {node_id, endpoints, fingerprint} here as JSON once "
                              "listening")
    log_format: str = setting("text", "log lines as text or as one JSON object per line",
                              choices=("text", "json"))
    prog: str = "pinhole-media-node"  # the command's name, for its messages
    cascade_ports: range | None = None  # a hybrid node's cascade source ports (None: any)
    cluster: str = ""  # a hybrid node's cluster in its org ("": a cluster of its own)
    overflow_rtt_ms: float = 250.0  # a hybrid node's cluster: devices this far go to the cloud
    #: a hybrid node's explicit HTTP proxy for its signalling (None: direct); never media
    proxy: ProxyConfig | None = None

    def masked(self) -> dict[str, object]:
        """The settings for the start-up log, secrets masked."""
        return masked(self)

    @property
    def bind(self) -> str:
        return self.listen or self.advertise


def parser(prog: str = "pinhole-media-node", kind: str = "cloud",
           description: str | None = None,
           defaults: NodeSettings | None = None) -> argparse.ArgumentParser:
    """The flags of ``defaults`` (a hybrid node's have their own region)."""
    p = Parser(
        prog=prog,
        description=description or "Pinhole media node: STUN responder and symmetric SRTP "
        "relay on UDP, TCP and TLS. It connects out to the cloud and never needs an inbound "
        "control port. Every flag also reads PINHOLE_<FLAG> from the environment (e.g. "
        "PINHOLE_NODE_SECRET_FILE).\n\n"
        "Exit codes: 0 stopped, 1 other failure, 2 usage (a flag or a file it names), "
        "3 cannot reach the cloud, 5 the cloud's certificate did not verify.",
    )
    add_version(p)
    add_settings(p, NodeSettings, defaults or NodeSettings(kind=kind))
    return p


def parse(argv: Sequence[str] | None = None, *, prog: str = "pinhole-media-node",
          kind: str = "cloud", org: str = "") -> NodeSettings:
    p = parser(prog, kind)
    apply_environment(p, os.environ)
    return from_args(p.parse_args(argv), p, prog=prog, kind=kind, org=org)


def from_args(a: argparse.Namespace, p: argparse.ArgumentParser, *, prog: str, kind: str,
              org: str, cascade_ports: range | None = None, cluster: str = "",
              overflow_rtt_ms: float = 250.0, proxy: ProxyConfig | None = None
              ) -> NodeSettings:
    """The settings from parsed flags (a hybrid node's parser adds its own flags first)."""
    if not a.cloud:
        raise usage("--cloud URL is required", "pass --cloud https://HOST[:PORT] "
                    "(or set PINHOLE_CLOUD)")
    cloud = urlsplit(a.cloud)
    if cloud.scheme not in ("http", "https") or not cloud.hostname:
        raise usage(f"--cloud {a.cloud} is not a cloud URL", "give https://HOST[:PORT]")
    for flag in ("ca", "cert", "key"):
        if getattr(a, flag):
            readable_file(f"--{flag}", getattr(a, flag))
    return settings_from(NodeSettings, a, cloud=a.cloud.rstrip("/"), kind=kind, org=org,
                         prog=prog, cascade_ports=cascade_ports, cluster=cluster,
                         overflow_rtt_ms=overflow_rtt_ms, proxy=proxy)
