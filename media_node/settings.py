"""The media node's settings: one frozen object from flags and ``PINHOLE_*`` variables."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from urllib.parse import urlsplit

from edge.admission import StreamLimits
from edge.boundary import readable_file, usage
from edge.flags import (
    PORT,
    Number,
    Parser,
    add_secret,
    add_version,
    apply_environment,
    count,
    rate,
    seconds,
    secret_value,
)


@dataclass(frozen=True, slots=True)
class NodeSettings:
    cloud: str = ""  # the cloud's base URL, e.g. https://cloud.example:443
    ca: str = ""  # CA certificate the cloud's certificate chains to ("" = system store)
    node_secret: str = ""
    node_id: str = ""  # "" lets the cloud choose one
    kind: str = "cloud"  # "cloud" or "hybrid"
    org: str = ""  # a hybrid node's organisation
    region: str = "default"
    advertise: str = "127.0.0.1"  # the address clients reach this node on
    listen: str = ""  # bind address; "" = the advertised address
    # seed: "UDP 5004 ... preferred"; "UDP 33434 ... last resort"; 9000 for legacy-dc nodes
    udp_port: int = 5004
    udp_last_resort_port: int = 33434
    legacy_dc: bool = False
    legacy_port: int = 9000
    tcp_port: int = 5004  # seed: "TCP port 5004 ... if UDP is blocked"
    tls_port: int = 443  # seed: "TLS port 443"; 8443 when this process may not bind below 1024
    udp: bool = True
    tcp: bool = True
    tls: bool = True
    cert: str = ""  # PEM certificate for TLS 443; generated (self-signed) when empty
    key: str = ""
    capacity: int = 1000
    stun_rate: float = 20.0  # unauthenticated STUN requests per second per flow (5-tuple)
    stun_burst: float = 40.0
    stun_ip_rate: float = 1000.0  # ceiling per source IP, all its flows (an office NAT)
    stun_ip_burst: float = 4000.0
    max_connections: int = 4096  # open TCP/TLS connections, all sources together
    max_connections_per_source: int = 1024  # open TCP/TLS connections from one IP address
    handshake_s: float = 10.0  # a TLS handshake must finish within this
    first_message_s: float = 10.0  # the first whole RFC 4571 frame must arrive within this
    idle_s: float = 60.0  # no whole frame for this long closes a TCP/TLS connection
    consent_s: float = 30.0  # RFC 7675 §5.1: consent expires 30 s after the last response
    consent_check_s: float = 4.0  # cascade legs' consent checks (RFC 7675 §5.1), ±20 %
    leg_timeout_s: float = 90.0  # a leg with no consent for this long is freed
    simulated_rtt_ms: float = 0.0  # simulation knob: delay before every reply and forward
    metrics_listen: str = ""  # host:port for /metrics and /healthz over HTTP ("" = off)
    state_file: str = ""  # written once listening: {node_id, endpoints, fingerprint}
    log_format: str = "text"  # "text" or "json" (one JSON object per line)
    prog: str = "pinhole-media-node"  # the command's name, for its messages
    cascade_ports: range | None = None  # a hybrid node's cascade source ports (None: any)

    def masked(self) -> dict[str, object]:
        """The settings for the start-up log, secrets masked."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = "****" if f.name == "node_secret" and value else value
        return out

    @property
    def bind(self) -> str:
        return self.listen or self.advertise

    @property
    def stream_limits(self) -> StreamLimits:
        return StreamLimits(self.max_connections, self.max_connections_per_source,
                            self.handshake_s, self.first_message_s, self.idle_s)


def parser(prog: str = "pinhole-media-node", kind: str = "cloud",
           description: str | None = None) -> argparse.ArgumentParser:
    d = NodeSettings(kind=kind)
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
    p.add_argument("--cloud", default=d.cloud, help="the cloud's base URL")
    p.add_argument("--ca", default=d.ca, help="CA file for the cloud's certificate")
    add_secret(p, "--node-secret", "the secret presented to the cloud when registering")
    p.add_argument("--node-id", default=d.node_id,
                   help="stable node id (default: the cloud picks one)")
    p.add_argument("--region", default=d.region, help="region name")
    p.add_argument("--advertise", default=d.advertise,
                   help="IP address clients reach this node on (published in the node list)")
    p.add_argument("--listen", default=d.listen,
                   help="address to bind (default: the advertised address)")
    p.add_argument("--udp-port", type=PORT, default=d.udp_port,
                   help="preferred UDP media port")
    p.add_argument("--udp-last-resort-port", type=PORT,
                   default=d.udp_last_resort_port,
                   help="last-resort UDP port")
    p.add_argument("--legacy-dc", action="store_true", default=d.legacy_dc,
                   help="node in the legacy data-center ranges: also listen on UDP 9000")
    p.add_argument("--legacy-port", type=PORT, default=d.legacy_port,
                   help="legacy UDP port")
    p.add_argument("--tcp-port", type=PORT, default=d.tcp_port,
                   help="TCP media port, RFC 4571 framing")
    p.add_argument("--tls-port", type=PORT, default=d.tls_port,
                   help="TLS media port (8443 when it may not bind below 1024)")
    p.add_argument("--no-udp", action="store_true", default=False,
                   help="do not listen on UDP")
    p.add_argument("--no-tcp", action="store_true", default=False,
                   help="do not listen on TCP")
    p.add_argument("--no-tls", action="store_true", default=False,
                   help="do not listen on TLS")
    p.add_argument("--cert", default=d.cert,
                   help="PEM certificate for TLS (default: a self-signed one made at start)")
    p.add_argument("--key", default=d.key, help="PEM private key for --cert")
    p.add_argument("--capacity", type=count(), default=d.capacity,
                   help="legs this node accepts")
    p.add_argument("--stun-rate", type=rate(), default=d.stun_rate,
                   help="unauthenticated STUN requests per second per flow: source IP and "
                   "port, or one TCP/TLS connection (0: no limit)")
    p.add_argument("--stun-burst", type=rate(), default=d.stun_burst,
                   help="burst of unauthenticated STUN requests per flow")
    p.add_argument("--stun-ip-rate", type=rate(),
                   default=d.stun_ip_rate,
                   help="ceiling per source IP over all its flows: an office behind one NAT "
                   "address shares it (size it for the office: see the ops notes)")
    p.add_argument("--stun-ip-burst", type=rate(),
                   default=d.stun_ip_burst,
                   help="burst of the per-source-IP ceiling")
    p.add_argument("--max-connections", type=count(),
                   default=d.max_connections,
                   help="open TCP/TLS media connections this node accepts in total")
    p.add_argument("--max-connections-per-source", type=count(),
                   default=d.max_connections_per_source,
                   help="open TCP/TLS media connections from one IP address (an office NAT "
                   "counts once: one per participant using TCP/TLS behind it)")
    p.add_argument("--handshake-s", type=seconds(zero=True), default=d.handshake_s,
                   help="close a TLS connection whose handshake takes longer (0: no limit)")
    p.add_argument("--first-message-s", type=seconds(),
                   default=d.first_message_s,
                   help="close a TCP/TLS connection whose first whole frame takes longer")
    p.add_argument("--idle-s", type=seconds(), default=d.idle_s,
                   help="close a TCP/TLS connection without a whole frame for this long "
                   "(consent keepalives come every ~5 s)")
    p.add_argument("--consent-s", type=seconds(), default=d.consent_s,
                   help="stop sending on a leg this long after its last consent (RFC 7675: 30)")
    p.add_argument("--consent-check-s", type=seconds(), default=d.consent_check_s,
                   help="send consent checks on cascade legs about this often, randomized "
                   "±20%% (RFC 7675 §5.1; 4 s: a pinhole that closes after 5 s idle holds)")
    p.add_argument("--leg-timeout-s", type=seconds(),
                   default=d.leg_timeout_s,
                   help="free a leg after this long without consent")
    p.add_argument("--simulated-rtt-ms", type=Number(float, 0, 10_000),
                   default=d.simulated_rtt_ms,
                   help="simulation knob: delay every reply and forwarded packet by N ms, "
                   "standing in for distance")
    p.add_argument("--metrics-listen", default=d.metrics_listen,
                   help="HOST:PORT for Prometheus /metrics and /healthz (plain HTTP)")
    p.add_argument("--state-file", default=d.state_file,
                   help="write {node_id, endpoints, fingerprint} here as JSON once listening")
    p.add_argument("--log-format", choices=["text", "json"],
                   default=d.log_format,
                   help="log lines as text or as one JSON object per line")
    return p


def parse(argv: Sequence[str] | None = None, *, prog: str = "pinhole-media-node",
          kind: str = "cloud", org: str = "") -> NodeSettings:
    p = parser(prog, kind)
    apply_environment(p, os.environ)
    return from_args(p.parse_args(argv), p, prog=prog, kind=kind, org=org)


def from_args(a: argparse.Namespace, p: argparse.ArgumentParser, *, prog: str, kind: str,
              org: str, cascade_ports: range | None = None) -> NodeSettings:
    """The settings from parsed flags (a hybrid node's parser adds its own flags first)."""
    a.node_secret = secret_value("--node-secret", a.node_secret, a.node_secret_file)
    if not a.cloud:
        raise usage("--cloud URL is required", "pass --cloud https://HOST[:PORT] "
                    "(or set PINHOLE_CLOUD)")
    cloud = urlsplit(a.cloud)
    if cloud.scheme not in ("http", "https") or not cloud.hostname:
        raise usage(f"--cloud {a.cloud} is not a cloud URL", "give https://HOST[:PORT]")
    for flag in ("ca", "cert", "key"):
        if getattr(a, flag):
            readable_file(f"--{flag}", getattr(a, flag))
    return NodeSettings(
        cloud=a.cloud.rstrip("/"), ca=a.ca, node_secret=a.node_secret, node_id=a.node_id,
        kind=kind, org=org, region=a.region, advertise=a.advertise, listen=a.listen,
        udp_port=a.udp_port, udp_last_resort_port=a.udp_last_resort_port,
        legacy_dc=a.legacy_dc, legacy_port=a.legacy_port, tcp_port=a.tcp_port,
        tls_port=a.tls_port, udp=not a.no_udp, tcp=not a.no_tcp, tls=not a.no_tls,
        cert=a.cert, key=a.key, capacity=a.capacity, stun_rate=a.stun_rate,
        stun_burst=a.stun_burst, stun_ip_rate=a.stun_ip_rate, stun_ip_burst=a.stun_ip_burst,
        consent_s=a.consent_s, consent_check_s=a.consent_check_s,
        max_connections=a.max_connections,
        max_connections_per_source=a.max_connections_per_source,
        handshake_s=a.handshake_s, first_message_s=a.first_message_s, idle_s=a.idle_s,
        leg_timeout_s=a.leg_timeout_s, simulated_rtt_ms=a.simulated_rtt_ms,
        metrics_listen=a.metrics_listen, state_file=a.state_file, log_format=a.log_format,
        prog=prog, cascade_ports=cascade_ports,
    )
