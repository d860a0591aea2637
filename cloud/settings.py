"""The cloud's settings: one frozen object from flags and ``PINHOLE_*`` variables."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path


@dataclass(frozen=True, slots=True)
class CloudSettings:
    listen: str = "127.0.0.1"
    port: int = 443  # DESIGN: HTTPS 443; falls back to 8443 when it may not bind
    cert: str = ""
    key: str = ""
    orgs: str = ""  # JSON file of organisations (see cloud.identity)
    node_secret: str = ""  # cloud media nodes authenticate with it
    token_key: str = ""  # hex seed of the Ed25519 token key; shared by replicas
    store: str = "memory"  # "memory" or redis://host:port/db
    probe_ttl_s: int = 7200  # seed: "The probing data cache expiry is set to 2 hours."
    probe_interval_s: int = 3600
    probe_timeout_ms: int = 1000
    token_ttl_s: int = 86400
    heartbeat_s: float = 5.0
    heartbeat_misses: int = 3
    allocate_timeout_s: float = 5.0
    max_body_bytes: int = 256 * 1024
    state_file: str = ""  # written once listening: the real URL and port
    operator_token: str = ""  # the operator's credential for the console ("" = console closed)

    def masked(self) -> dict[str, object]:
        """The settings for the start-up log, secrets masked."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in {"node_secret", "token_key", "operator_token"} and value:
                value = "****"
            out[f.name] = value
        return out


def _env(name: str, default: str) -> str:
    return os.environ.get("PINHOLE_" + name.upper(), default)


def _secret_from(path: str, p: argparse.ArgumentParser, what: str = "node secret") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        p.error(f"cannot read the {what} file {path}: {exc.strerror}")


def parse(argv: Sequence[str] | None = None) -> CloudSettings:
    d = CloudSettings()
    p = argparse.ArgumentParser(
        prog="pinhole-cloud",
        description="Pinhole cloud: signaling and registration API (HTTPS + WSS). Every flag "
        "also reads PINHOLE_<FLAG> from the environment (e.g. PINHOLE_STORE).",
    )
    p.add_argument("--listen", default=_env("listen", d.listen), help="address to bind")
    p.add_argument("--port", type=int, default=int(_env("port", str(d.port))),
                   help="HTTPS port (443; 8443 when this process may not bind below 1024)")
    p.add_argument("--cert", default=_env("cert", d.cert), help="PEM certificate (chain)")
    p.add_argument("--key", default=_env("key", d.key), help="PEM private key")
    p.add_argument("--orgs", default=_env("orgs", d.orgs),
                   help="JSON file: organisations, enrollment keys, hybrid node secrets")
    p.add_argument("--node-secret", default=_env("node_secret", d.node_secret),
                   help="secret cloud media nodes present to register")
    p.add_argument("--node-secret-file", default=_env("node_secret_file", ""),
                   help="read the node secret from this file instead (e.g. a shared volume)")
    p.add_argument("--token-key", default=_env("token_key", d.token_key),
                   help="hex seed (32 bytes) of the device-token signing key; replicas share it")
    p.add_argument("--store", default=_env("store", d.store),
                   help="state store: memory, or redis://host:port/db")
    p.add_argument("--probe-ttl-s", type=int, default=int(_env("probe_ttl_s", str(d.probe_ttl_s))),
                   help="how long a reachability report is kept (seed: 2 hours)")
    p.add_argument("--probe-interval-s", type=int,
                   default=int(_env("probe_interval_s", str(d.probe_interval_s))),
                   help="how often devices re-probe")
    p.add_argument("--probe-timeout-ms", type=int,
                   default=int(_env("probe_timeout_ms", str(d.probe_timeout_ms))),
                   help="per-probe timeout devices use")
    p.add_argument("--token-ttl-s", type=int, default=int(_env("token_ttl_s", str(d.token_ttl_s))),
                   help="device token lifetime")
    p.add_argument("--heartbeat-s", type=float,
                   default=float(_env("heartbeat_s", str(d.heartbeat_s))),
                   help="node heartbeat interval")
    p.add_argument("--heartbeat-misses", type=int,
                   default=int(_env("heartbeat_misses", str(d.heartbeat_misses))),
                   help="missed heartbeats before a node is unhealthy")
    p.add_argument("--state-file", default=_env("state_file", d.state_file),
                   help="write {url, port} here as JSON once listening")
    p.add_argument("--operator-token", default=_env("operator_token", d.operator_token),
                   help="the operator's credential for the console at / (default: none, and "
                   "the console stays closed)")
    p.add_argument("--operator-token-file", default=_env("operator_token_file", ""),
                   help="read the operator's credential from this file instead")
    a = p.parse_args(argv)
    if a.node_secret_file:
        a.node_secret = _secret_from(a.node_secret_file, p)
    if a.operator_token_file:
        a.operator_token = _secret_from(a.operator_token_file, p, "operator token")
    return CloudSettings(
        listen=a.listen, port=a.port, cert=a.cert, key=a.key, orgs=a.orgs,
        node_secret=a.node_secret, token_key=a.token_key, store=a.store,
        probe_ttl_s=a.probe_ttl_s, probe_interval_s=a.probe_interval_s,
        probe_timeout_ms=a.probe_timeout_ms, token_ttl_s=a.token_ttl_s,
        heartbeat_s=a.heartbeat_s, heartbeat_misses=a.heartbeat_misses,
        state_file=a.state_file, operator_token=a.operator_token,
    )
