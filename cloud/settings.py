"""The cloud's settings: one frozen object from flags and ``PINHOLE_*`` variables."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields

from edge.boundary import readable_file, usage
from edge.flags import (
    PORT,
    Parser,
    add_secret,
    add_version,
    apply_environment,
    count,
    seconds,
    secret_value,
)


@dataclass(frozen=True, slots=True)
class CloudSettings:
    listen: str = "127.0.0.1"
    port: int = 443  # DESIGN: HTTPS 443; falls back to 8443 when it may not bind
    cert: str = ""
    key: str = ""
    orgs: str = ""  # JSON file of organisations (see cloud.identity)
    node_secret: str = ""  # cloud media nodes authenticate with it
    token_key: str = ""  # hex seed of the Ed25519 token key; shared by replicas
    operator_token: str = ""  # the credential operator pages (the dashboard) require
    store: str = "memory"  # "memory" or redis://host:port/db
    probe_ttl_s: int = 7200  # seed: "The probing data cache expiry is set to 2 hours."
    probe_interval_s: int = 3600
    probe_timeout_ms: int = 1000
    token_ttl_s: int = 86400
    # a node heartbeats every heartbeat_s; heartbeat_misses missed ones (1.5 s) or a missed
    # WebSocket pong (ping every 2 × heartbeat_s, pong due within heartbeat_s) end its health:
    # a hung node is left in under 2 s, inside the 3 s budget for media to come back
    heartbeat_s: float = 0.5
    heartbeat_misses: int = 3
    allocate_timeout_s: float = 5.0
    # a cascade to a node that does not answer (hung, not yet noticed) must not hold the
    # meeting, and the participants being moved away from that node, for long
    cascade_timeout_s: float = 2.0
    max_body_bytes: int = 256 * 1024
    max_json_depth: int = 32  # nested arrays/objects in a body (the models need 4)
    state_file: str = ""  # written once listening: the real URL and port
    max_connections: int = 10000  # open connections, all sources together
    # open connections from one address: a whole office behind one NAT address counts once
    # (each device holds its REST connection and its events WebSocket)
    max_connections_per_source: int = 2500
    handshake_s: float = 10.0  # a TLS handshake must finish within this
    idle_s: float = 30.0  # no whole request for this long (silent or partial) closes it
    max_events_per_device: int = 4  # open /v1/events WebSockets of one device
    metrics_retention_s: float = 86400.0  # end-of-call reports: aggregated, then forgotten
    meeting_retention_s: float = 3600.0  # an ended (empty) meeting is forgotten after this

    def masked(self) -> dict[str, object]:
        """The settings for the start-up log, secrets masked."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRETS and value:
                value = "****"
            out[f.name] = value
        return out


STORES = ("memory", "redis://", "rediss://", "unix://")
#: settings that are secrets: masked in the start-up log, never taken from the command line
SECRETS = ("node_secret", "token_key", "operator_token")


def _is_hex_seed(text: str) -> bool:
    try:
        return len(bytes.fromhex(text)) == 32
    except ValueError:
        return False


def parser() -> argparse.ArgumentParser:
    d = CloudSettings()
    p = Parser(
        prog="pinhole-cloud",
        description="Pinhole cloud: signaling and registration API (HTTPS + WSS). Every flag "
        "also reads PINHOLE_<FLAG> from the environment (e.g. PINHOLE_STORE).\n\n"
        "Exit codes: 0 stopped, 1 other failure, 2 usage (a flag or a file it names).",
    )
    add_version(p)
    p.add_argument("--listen", default=d.listen, help="address to bind")
    p.add_argument("--port", type=PORT, default=d.port,
                   help="HTTPS port (443; 8443 when this process may not bind below 1024)")
    p.add_argument("--cert", default=d.cert, help="PEM certificate (chain)")
    p.add_argument("--key", default=d.key, help="PEM private key")
    p.add_argument("--orgs", default=d.orgs,
                   help="JSON file: organisations, enrollment keys, hybrid node secrets")
    add_secret(p, "--node-secret", "the secret cloud media nodes present to register")
    add_secret(p, "--token-key", "the hex seed (32 bytes) of the device-token signing key "
               "that replicas share")
    add_secret(p, "--operator-token", "the operator credential the dashboard and other "
               "operator pages require")
    p.add_argument("--store", default=d.store,
                   help="state store: memory, or redis://host:port/db")
    p.add_argument("--probe-ttl-s", type=count(high=366 * 86400), default=d.probe_ttl_s,
                   help="how long a reachability report is kept")
    p.add_argument("--probe-interval-s", type=count(high=366 * 86400),
                   default=d.probe_interval_s,
                   help="how often devices re-probe")
    p.add_argument("--probe-timeout-ms", type=count(high=60_000),
                   default=d.probe_timeout_ms,
                   help="per-probe timeout devices use")
    p.add_argument("--token-ttl-s", type=count(high=366 * 86400), default=d.token_ttl_s,
                   help="device token lifetime")
    p.add_argument("--heartbeat-s", type=seconds(3600),
                   default=d.heartbeat_s,
                   help="node heartbeat interval")
    p.add_argument("--heartbeat-misses", type=count(high=1000),
                   default=d.heartbeat_misses,
                   help="missed heartbeats before a node is unhealthy")
    p.add_argument("--state-file", default=d.state_file,
                   help="write {url, port} here as JSON once listening")
    p.add_argument("--max-connections", type=count(),
                   default=d.max_connections,
                   help="open client connections the cloud accepts in total")
    p.add_argument("--max-connections-per-source", type=count(),
                   default=d.max_connections_per_source,
                   help="open connections from one IP address; an office behind one NAT "
                   "address needs about two per device (REST + events)")
    p.add_argument("--handshake-s", type=seconds(),
                   default=d.handshake_s,
                   help="close a connection whose TLS handshake takes longer")
    p.add_argument("--idle-s", type=seconds(), default=d.idle_s,
                   help="close a connection without a whole request for this long")
    p.add_argument("--max-events-per-device", type=count(high=1000),
                   default=d.max_events_per_device,
                   help="open /v1/events WebSockets one device may hold")
    p.add_argument("--metrics-retention-s", type=seconds(),
                   default=d.metrics_retention_s,
                   help="keep end-of-call reports this long (their totals are kept for good)")
    p.add_argument("--meeting-retention-s", type=seconds(zero=True),
                   default=d.meeting_retention_s,
                   help="forget a meeting this long after its last participant left")
    return p


def parse(argv: Sequence[str] | None = None) -> CloudSettings:
    """Settings from ``argv`` and ``PINHOLE_*``; a bad flag or file is a usage failure."""
    p = parser()
    apply_environment(p, os.environ)
    a = p.parse_args(argv)
    for name in SECRETS:
        flag = "--" + name.replace("_", "-")
        setattr(a, name, secret_value(flag, getattr(a, name), getattr(a, name + "_file")))
    if a.store != "memory" and not a.store.startswith(STORES[1:]):
        raise usage(f"--store {a.store} is not a store Pinhole knows",
                    "use memory, or redis://HOST:PORT/DB")
    if a.token_key and not _is_hex_seed(a.token_key):
        raise usage("--token-key is not 32 bytes of hex (64 characters)",
                    "generate one with: python3 -c 'import secrets; print(secrets.token_hex(32))'")
    for flag in ("cert", "key", "orgs"):
        if getattr(a, flag):
            readable_file(f"--{flag}", getattr(a, flag))
    return CloudSettings(
        listen=a.listen, port=a.port, cert=a.cert, key=a.key, orgs=a.orgs,
        node_secret=a.node_secret, token_key=a.token_key, operator_token=a.operator_token,
        store=a.store,
        probe_ttl_s=a.probe_ttl_s, probe_interval_s=a.probe_interval_s,
        probe_timeout_ms=a.probe_timeout_ms, token_ttl_s=a.token_ttl_s,
        heartbeat_s=a.heartbeat_s, heartbeat_misses=a.heartbeat_misses,
        state_file=a.state_file, max_connections=a.max_connections,
        max_connections_per_source=a.max_connections_per_source, handshake_s=a.handshake_s,
        idle_s=a.idle_s, max_events_per_device=a.max_events_per_device,
        metrics_retention_s=a.metrics_retention_s, meeting_retention_s=a.meeting_retention_s,
    )
