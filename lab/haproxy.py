"""HAProxy in front of cloud replicas: its configuration, and what it says of each replica.

Layer 4 (``mode tcp``): TLS passes through untouched, the replicas present the
cloud's certificate and HAProxy never sees a key. Each replica is checked with
``GET /readyz`` over TLS (``check-ssl verify none``: the check asks whether the
replica is ready, the clients verify the certificate); a replica that does not
answer 200 within the check timeout, ``fall`` times in a row, is drained: no new
connection goes to it until it answers ``rise`` times again. Long-lived WebSockets
(a device's events, a node's control channel) are tunnels: ``timeout tunnel``
keeps them open however quiet they are (the node pings every second anyway).

Every replica is also listed once more as a backup without a check. When no
replica is ready, that is the store failing over (every replica's ``/readyz``
pings it), not every replica hanging at once: HAProxy then keeps sending
connections to the replicas, which answer ``503 store_unavailable`` with a hint
until the store is back, and serve the moment it is, instead of HAProxy refusing
connections until ``rise`` checks have passed again.

HAProxy runs in the foreground (``-db``) as the stack's process ``balancer``; its
statistics (``show stat``) answer on a loopback TCP port at level ``user`` (read
only): :func:`server_states`.

``python -m lab.haproxy`` is the same configuration for docker-compose.scale.yml, whose
``cloud`` service is HAProxy: ``run`` writes the file and becomes HAProxy, ``config``
prints the file, ``states`` prints what HAProxy says of each replica (JSON)::

    python -m lab.haproxy run --config /var/lib/pinhole/haproxy.cfg --listen 0.0.0.0:443
        --stats 127.0.0.1:9999 --health-host cloud --replica cloud-1=198.18.0.11:443 ...
    python -m lab.haproxy states --stats 127.0.0.1:9999
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from edge import measure
from wire.address import Address

BACKEND: Final = "replicas"
DEBIAN_PACKAGE: Final = "haproxy"


@dataclass(frozen=True, slots=True)
class Checks:
    """How HAProxy checks replicas: every ``inter_ms``, each check given ``timeout_ms``;
    drained after ``fall`` failures in a row, back after ``rise`` successes."""

    inter_ms: int = 500
    timeout_ms: int = 1000
    fall: int = 2
    rise: int = 2

    def __post_init__(self) -> None:
        if min(self.inter_ms, self.timeout_ms, self.fall, self.rise) < 1:
            raise ValueError("check intervals, timeouts and counts must be at least 1")

    @property
    def drain_bound_s(self) -> float:
        """The longest a hung replica keeps getting new connections: ``fall`` checks,
        each started ``inter`` after the last and given the whole timeout."""
        return self.fall * (self.inter_ms + self.timeout_ms) / 1000


@dataclass(frozen=True, slots=True)
class Replica:
    name: str
    address: Address


def config(listen: Address, replicas: Sequence[Replica], stats: Address,
           checks: Checks = Checks(), health_host: str = "") -> str:
    """The whole ``haproxy.cfg`` for ``replicas`` behind ``listen``."""
    if not replicas:
        raise ValueError("HAProxy needs at least one replica behind it")
    names = [r.name for r in replicas]
    if len(set(names)) != len(names):
        raise ValueError(f"replica names must differ: {names}")
    host = health_host or listen.host
    lines = [
        "global",
        "    log stdout format raw local0 info",
        f"    stats socket ipv4@{stats.host}:{stats.port} level user",
        "    maxconn 4000",  # two descriptors each, under a 10,000 open-file limit
        "",
        "defaults",
        "    mode tcp",
        "    log global",
        "    option tcplog",
        "    option redispatch",  # a refused connection is tried on another replica
        "    retries 2",
        "    timeout connect 1s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout client-fin 5s",
        "    timeout tunnel 1h",  # WebSockets: a device's events, a node's control channel
        f"    timeout check {checks.timeout_ms}ms",
        "",
        "frontend cloud",
        f"    bind {listen.host}:{listen.port}",
        f"    default_backend {BACKEND}",
        "",
        f"backend {BACKEND}",
        "    balance roundrobin",
        "    option allbackups",  # no replica ready (the store failing over): use them all
        "    option httpchk",
        f"    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host {host}",
        "    http-check expect status 200",
        f"    default-server inter {checks.inter_ms}ms fall {checks.fall} "
        f"rise {checks.rise}",
    ]
    for r in replicas:
        lines.append(f"    server {r.name} {r.address.host}:{r.address.port} "
                     "check check-ssl verify none")
    for r in replicas:
        lines.append(f"    server {r.name}-unchecked {r.address.host}:{r.address.port} backup")
    return "\n".join(lines) + "\n"


def argv(config_file: str) -> list[str]:
    """HAProxy's arguments: in the foreground, logging to stdout (its log file)."""
    return ["-db", "-f", config_file]


def parse_stat(text: str) -> dict[str, str]:
    """``show stat`` (CSV, its header line starting ``# ``) as ``{server: status}`` for the
    checked servers of :data:`BACKEND` (``UP``, ``DOWN``, ``UP 1/2`` …)."""
    body = text.removeprefix("# ")
    states: dict[str, str] = {}
    for row in csv.DictReader(io.StringIO(body)):
        name = row.get("svname") or ""
        if row.get("pxname") != BACKEND or name in ("FRONTEND", "BACKEND", ""):
            continue
        if name.endswith("-unchecked"):
            continue
        states[name] = row.get("status") or ""
    return states


async def server_states(stats: Address, timeout_s: float = 2.0) -> dict[str, str]:
    """What HAProxy's statistics say of each checked replica, by name."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(stats.host, stats.port)
        try:
            writer.write(b"show stat\n")
            await writer.drain()
            text = (await reader.read()).decode(errors="replace")
        finally:
            writer.close()
    return parse_stat(text)


def _address(text: str) -> Address:
    """``HOST:PORT`` (argparse type)."""
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"want HOST:PORT, not {text!r}")
    return Address(host.strip("[]"), int(port))


def _replica(text: str) -> Replica:
    """``NAME=HOST:PORT`` (argparse type)."""
    name, equals, address = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"want NAME=HOST:PORT, not {text!r}")
    return Replica(name, _address(address))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab.haproxy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    writers = {
        "config": sub.add_parser("config", help="print haproxy.cfg (or write it: --config)"),
        "run": sub.add_parser("run", help="write haproxy.cfg to --config, then exec HAProxy "
                              "on it in the foreground"),
    }
    for name, w in writers.items():
        w.add_argument("--config", required=name == "run", default=None,
                       help="the configuration file to write")
        w.add_argument("--listen", type=_address, required=True,
                       help="HOST:PORT the cloud's clients connect to")
        w.add_argument("--replica", type=_replica, action="append", required=True,
                       help="NAME=HOST:PORT of a cloud replica; repeatable")
        w.add_argument("--stats", type=_address, required=True,
                       help="HOST:PORT of the statistics socket (read only)")
        w.add_argument("--health-host", default="",
                       help="the Host header of the /readyz checks (default: --listen's host)")
    s = sub.add_parser("states", help="print what HAProxy says of each replica (JSON)")
    s.add_argument("--stats", type=_address, required=True,
                   help="HOST:PORT of the statistics socket")
    return p


def main(raw: Sequence[str] | None = None) -> int:
    measure.start_if_asked(os.environ)  # under make test (edge/measure.py)
    args = _parser().parse_args(raw)
    if args.command == "states":
        try:
            states = asyncio.run(server_states(args.stats))
        except (OSError, TimeoutError) as exc:
            print(f"python -m lab.haproxy: no statistics at {args.stats}: {exc}",
                  file=sys.stderr)
            return 1
        print(json.dumps(states))
        return 0
    try:
        text = config(args.listen, args.replica, args.stats, health_host=args.health_host)
    except ValueError as exc:
        print(f"python -m lab.haproxy: {exc}", file=sys.stderr)
        return 2
    if args.config is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.config, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        print(f"python -m lab.haproxy: cannot write --config {args.config}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        return 0
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if binary is None:
        print(f"python -m lab.haproxy: no haproxy (Debian package {DEBIAN_PACKAGE})",
              file=sys.stderr)
        return 2
    sys.stdout.flush()
    os.execv(binary, [binary, *argv(args.config)])
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main())
