"""The cloud's settings: one frozen object from flags and ``PINHOLE_*`` variables."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from edge.admission import ConnectionLimits
from edge.boundary import readable_file, usage
from edge.flags import (
    PORT,
    Parser,
    add_settings,
    add_version,
    apply_environment,
    count,
    group,
    masked,
    seconds,
    setting,
    settings_from,
)

#: the cloud's connection limits: open connections from one address are a whole office
#: behind one NAT address (each device holds its REST connection and its events WebSocket);
#: no first-message deadline of its own: ``idle_s``, run from accept, bounds the first request
CLOUD_LIMITS = ConnectionLimits(max_connections=10000, max_connections_per_source=2500,
                                first_message_s=0.0, idle_s=30.0)


@dataclass(frozen=True, slots=True)
class CloudSettings:
    listen: str = setting("127.0.0.1", "address to bind")
    # docs/design.md "Ports": HTTPS 443; falls back to 8443 when it may not bind
    port: int = setting(443, "HTTPS port (443; 8443 when this process may not bind below 1024)",
                        type=PORT)
    cert: str = setting("", "PEM certificate (chain)")
    key: str = setting("", "PEM private key")
    # JSON file of organisations (see cloud.identity)
    orgs: str = setting("", "JSON file: organisations, enrollment keys, hybrid node secrets")
    # cloud media nodes authenticate with it
    node_secret: str = setting("", "the secret cloud media nodes present to register",
                               secret=True)
    # hex seed of the Ed25519 token key; shared by replicas
    token_key: str = setting("", "the hex seed (32 bytes) of the device-token signing key that "
                             "replicas share", secret=True)
    # the credential operator pages (the dashboard) require
    operator_token: str = setting("", "the operator credential the dashboard and other "
                                  "operator pages require", secret=True)
    store: str = setting("memory", "state store: memory, redis://host:port/db, or "
                         "redis+sentinel://host:port,host:port,host:port/service/db (the "
                         "primary the Sentinels name)")
    # GET /v1/turn: TURN servers for WebRTC endpoints (RFC 8656), credentials in coturn's
    # shared-secret scheme (cloud.turn); the secret is coturn's static-auth-secret
    turn_secret: str = setting("", "the secret shared with the TURN server (coturn's "
                               "static-auth-secret) that TURN credentials are minted with",
                               secret=True)
    turn_url: tuple[str, ...] = setting(
        (), "a TURN server's URL handed to WebRTC endpoints, e.g. "
        "turns:turn.example:443?transport=tcp (RFC 7065), repeatable (comma-separated in the "
        "variable); needs the TURN secret", many=True)
    turn_ttl_s: float = setting(3600.0, "how long a TURN credential is good for",
                                type=seconds(7 * 86400.0, low=1.0))
    # seed: "The probing data cache expiry is set to 2 hours."
    probe_ttl_s: int = setting(7200, "how long a reachability report is kept",
                               type=count(high=366 * 86400))
    probe_interval_s: int = setting(3600, "how often devices re-probe",
                                    type=count(high=366 * 86400))
    probe_timeout_ms: int = setting(1000, "per-probe timeout devices use",
                                    type=count(high=60_000))
    token_ttl_s: int = setting(86400, "device token lifetime", type=count(high=366 * 86400))
    # a node heartbeats every heartbeat_s; heartbeat_misses missed ones (1.5 s) or a missed
    # WebSocket pong (ping every 2 × heartbeat_s, pong due within heartbeat_s) end its health:
    # a hung node is left in under 2 s, inside the 3 s budget for media to come back
    heartbeat_s: float = setting(0.5, "node heartbeat interval", type=seconds(3600))
    heartbeat_misses: int = setting(3, "missed heartbeats before a node is unhealthy",
                                    type=count(high=1000))
    allocate_timeout_s: float = 5.0
    # a cascade to a node that does not answer (hung, not yet noticed) must not hold the
    # meeting, and the participants being moved away from that node, for long
    cascade_timeout_s: float = 2.0
    max_body_bytes: int = 256 * 1024
    max_json_depth: int = 32  # nested arrays/objects in a body (the models need 4)
    # written once listening: the real URL and port
    state_file: str = setting("", "write {url, port} here as JSON once listening")
    limits: ConnectionLimits = group(
        CLOUD_LIMITS, omit=("first_message_s",), help={
            "max_connections": "open client connections the cloud accepts in total",
            "max_connections_per_source": "open connections from one IP address; an office "
            "behind one NAT address needs about two per device (REST + events)",
            "idle_s": "close a connection without a whole request for this long"})
    max_events_per_device: int = setting(4, "open /v1/events WebSockets one device may hold",
                                         type=count(high=1000))
    # end-of-call reports: aggregated, then forgotten
    metrics_retention_s: float = setting(86400.0, "keep end-of-call reports this long (their "
                                         "totals are kept for good)", type=seconds())
    # an ended (empty) meeting is forgotten after this
    meeting_retention_s: float = setting(3600.0, "forget a meeting this long after its last "
                                         "participant left", type=seconds(zero=True))
    # a device of another org joining an org's meeting: on the cloud unless this is set
    guests_on_clusters: bool = setting(False, "let guests (devices of another org) use the "
                                       "meeting org's hybrid clusters; default: the cloud")

    def masked(self) -> dict[str, object]:
        """The settings for the start-up log, secrets masked."""
        return masked(self)


STORES = ("memory", "redis://", "rediss://", "unix://", "redis+sentinel://")


def _is_hex_seed(text: str) -> bool:
    try:
        return len(bytes.fromhex(text)) == 32
    except ValueError:
        return False


#: RFC 7065 §3.1: turn:HOST[:PORT][?transport=udp|tcp], turns: for TLS
TURN_URL = re.compile(r"turns?:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?"
                      r"(\?transport=(udp|tcp))?")


def _check_turn(settings: CloudSettings) -> None:
    """TURN URLs that parse, and a secret with them (neither is any use alone)."""
    for url in settings.turn_url:
        if not TURN_URL.fullmatch(url):
            raise usage(f"--turn-url {url} is not a TURN URL",
                        "give turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT]"
                        "?transport=tcp (RFC 7065)")
    if settings.turn_url and not settings.turn_secret:
        raise usage("--turn-url needs the secret shared with that TURN server",
                    "pass --turn-secret-file FILE (mode 0600) or set PINHOLE_TURN_SECRET")
    if settings.turn_secret and not settings.turn_url:
        raise usage("a TURN secret is set but no --turn-url",
                    "give the TURN server's URL with --turn-url, or unset the secret")


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="pinhole-cloud",
        description="Pinhole cloud: signaling and registration API (HTTPS + WSS). Every flag "
        "also reads PINHOLE_<FLAG> from the environment (e.g. PINHOLE_STORE).\n\n"
        "Exit codes: 0 stopped, 1 other failure, 2 usage (a flag or a file it names).",
    )
    add_version(p)
    add_settings(p, CloudSettings)
    return p


def parse(argv: Sequence[str] | None = None) -> CloudSettings:
    """Settings from ``argv`` and ``PINHOLE_*``; a bad flag or file is a usage failure."""
    p = parser()
    apply_environment(p, os.environ)
    settings = settings_from(CloudSettings, p.parse_args(argv))
    if settings.store != "memory" and not settings.store.startswith(STORES[1:]):
        raise usage(f"--store {settings.store} is not a store Pinhole knows",
                    "use memory, redis://HOST:PORT/DB or "
                    "redis+sentinel://HOST:PORT,HOST:PORT,HOST:PORT/SERVICE/DB")
    if settings.store.startswith("redis+sentinel://"):
        from cloud import redis_sentinel  # imports redis, which only a Redis store needs

        try:
            redis_sentinel.parse(settings.store)
        except ValueError as exc:
            raise usage(f"--store: {exc}",
                        "give redis+sentinel://HOST:PORT,HOST:PORT,HOST:PORT/SERVICE/DB") from None
    if settings.token_key and not _is_hex_seed(settings.token_key):
        raise usage("--token-key is not 32 bytes of hex (64 characters)",
                    "generate one with: python3 -c 'import secrets; print(secrets.token_hex(32))'")
    _check_turn(settings)
    for flag in ("cert", "key", "orgs"):
        if getattr(settings, flag):
            readable_file(f"--{flag}", getattr(settings, flag))
    return settings
