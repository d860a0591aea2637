"""``python -m lab.health TARGET``: exit 0 when TARGET is healthy, else 1 and why on stderr.
The healthcheck of docker-compose.yml's services:

- ``http://…`` or ``https://…``: the URL answers 200, with the top-level JSON fields asked
  for; ``--ca`` verifies an https URL's certificate:
  ``python -m lab.health https://cloud/readyz --ca /var/lib/pinhole/ca.pem --expect ok=true``,
  ``python -m lab.health http://127.0.0.1:9100/healthz --expect control=true``;
- ``tcp://HOST:PORT``: it accepts a connection (``tcp://10.99.0.3:8888``, the proxy);
- ``-- COMMAND…``: the command exits 0 (``-- nft list table inet pinhole_fw``).

Docker runs every check as a process of its own (a ``runc exec`` and a Python), once a
second for the service's whole life, so a check is cheap: a GET on a socket of its own,
without urllib, whose imports cost more than the rest of the check. And ``--hold-s S``
holds a check that follows a healthy one: it looks again once a second while the service
stays healthy, exits 1 at the first failure, 0 after S seconds. While a service is healthy,
Docker then starts one check per S + 1 seconds instead of one a second, and still learns of
a failure within a second; the checks after a failure answer at once, a second apart, so
the retries count what they counted before. A check that follows a failed one, or none,
answers at once too: the first healthy answer, the one Compose's ``service_healthy`` waits
for, is never held back. Which answer the container's previous check gave is a file in the
directory ``PINHOLE_HEALTH_DIR`` names: the image sets /dev/shm, a tmpfs of the container's
own that each start makes afresh. Without it (``pinhole-lab compose`` runs the same
healthchecks on the host, one at a time and only until healthy) a check answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import socket
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edge import measure

if TYPE_CHECKING:
    import ssl

HEALTH_DIR = "PINHOLE_HEALTH_DIR"  # the Dockerfile sets it
HOLD_EVERY_S = 1.0  # a held check looks as often as Docker's interval checks
WAIT_EVERY_S = 0.2  # a waiting one: its answer is what the services after it wait for
MAX_ANSWER = 1 << 20  # bytes of an HTTP answer read; a health document is far smaller


@functools.cache
def _tls(ca: str | None) -> ssl.SSLContext:
    import ssl  # only the cloud's check pays for it

    return ssl.create_default_context(cafile=ca)


def _get(url: str, ca: str | None, timeout_s: float) -> tuple[int, bytes]:
    """``GET url`` over HTTP/1.0 (no chunked body, the server closes): status and body."""
    scheme, _, rest = url.partition("://")
    hostport, slash, path = rest.partition("/")
    host, colon, port = hostport.rpartition(":")
    if not colon or not port.isdigit():
        host, port = hostport, ("443" if scheme == "https" else "80")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as raw:
        conn: socket.socket = raw
        if scheme == "https":
            conn = _tls(ca).wrap_socket(raw, server_hostname=host)
        with conn:
            conn.sendall(f"GET {slash}{path} HTTP/1.0\r\nHost: {hostport}\r\n"
                         "Connection: close\r\n\r\n".encode())
            answer = b""
            while len(answer) < MAX_ANSWER and (chunk := conn.recv(65536)):
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or not status[0].startswith(b"HTTP/") or not status[1].isdigit():
        raise OSError(f"not an HTTP answer: {head[:60]!r}")
    return int(status[1]), body


def check(url: str, ca: str | None, expect: Sequence[str], timeout_s: float) -> str | None:
    """``None`` when healthy, else why not."""
    if url.startswith("tcp://"):
        host, _, port = url.removeprefix("tcp://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=timeout_s).close()
        except (OSError, ValueError) as exc:
            return f"{url}: {exc}"
        return None
    if not url.startswith(("http://", "https://")):
        return f"{url}: not an http://, https:// or tcp:// URL"
    try:
        status, body = _get(url, ca, timeout_s)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        return f"{url}: {exc}"
    if status != 200:
        return f"{url}: HTTP {status}"
    if not expect:
        return None
    try:
        fields = json.loads(body)
    except ValueError:
        return f"{url} did not answer JSON"
    if not isinstance(fields, dict):
        return f"{url} did not answer a JSON object"
    for item in expect:
        key, _, want = item.partition("=")
        got = json.dumps(fields.get(key)).strip('"')
        if got != want:
            return f"{url}: {key} is {got}, not {want}"
    return None


def run(command: Sequence[str], timeout_s: float) -> str | None:
    """``None`` when ``command`` exits 0, else why not."""
    import subprocess  # only the command checks pay for it

    try:
        done = subprocess.run(list(command), capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{command[0]}: {exc}"
    if done.returncode:
        said = (done.stderr or done.stdout).strip().splitlines()
        return f"{command[0]} exited {done.returncode}" + (f": {said[-1]}" if said else "")
    return None


def marker(key: str) -> Path | None:
    """The file that says the container's previous check ``key`` answered healthy, in
    ``PINHOLE_HEALTH_DIR``; ``None`` without it, where nothing is held."""
    directory = os.environ.get(HEALTH_DIR)
    if not directory:
        return None
    return Path(directory) / f"pinhole-health-{zlib.crc32(key.encode()):08x}"


def held(probe: Callable[[], str | None], healthy_before: Path | None, hold_s: float = 0.0,
         wait_s: float = 0.0, clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> str | None:
    """One check: ``probe()``'s answer, ``None`` when healthy, as soon as it differs from the
    previous check's. After a healthy check (the file ``healthy_before`` exists) it probes
    again once a second while healthy, for up to ``hold_s`` seconds; after a failed one, or
    none, every 0.2 s while not healthy, for up to ``wait_s``. The file is there after a
    healthy answer only: a check Docker kills on its timeout leaves none. Without the file
    (``None``: no ``PINHOLE_HEALTH_DIR``) one probe answers."""
    if healthy_before is None:
        return probe()
    was_healthy = healthy_before.exists()
    with contextlib.suppress(OSError):  # one that cannot be written: every check answers
        healthy_before.unlink(missing_ok=True)
    limit, every_s = (hold_s, HOLD_EVERY_S) if was_healthy else (wait_s, WAIT_EVERY_S)
    deadline = clock() + limit
    problem = probe()
    while (problem is None) == was_healthy and clock() + every_s <= deadline:
        sleep(every_s)
        problem = probe()
    if problem is None:
        with contextlib.suppress(OSError):
            healthy_before.touch()
    return problem


def main(argv: Sequence[str] | None = None) -> int:
    measure.start_if_asked(os.environ)  # under make test (edge/measure.py)
    raw = list(sys.argv[1:] if argv is None else argv)
    command = raw[raw.index("--") + 1:] if "--" in raw else []
    p = argparse.ArgumentParser(prog="python -m lab.health", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", nargs="?", help="http:// or https:// URL to GET, or "
                   "tcp://HOST:PORT to connect to; or, after --, a command to run")
    p.add_argument("--ca", default=None, help="CA file for an https URL")
    p.add_argument("--expect", action="append", default=[], metavar="FIELD=VALUE",
                   help="a top-level JSON field and its value (true, 3, ok); repeatable")
    p.add_argument("--timeout-s", type=float, default=3.0, help="give up after this long")
    p.add_argument("--hold-s", type=float, default=0.0,
                   help="with PINHOLE_HEALTH_DIR, hold a check that follows a healthy one "
                   "for up to this long while the service stays healthy")
    args = p.parse_args(raw[:raw.index("--")] if "--" in raw else raw)
    if bool(args.url) == bool(command):
        p.error("give a URL, or a command after --")
    if command:
        problem = held(lambda: run(command, args.timeout_s), marker(" ".join(command)),
                       args.hold_s)
    else:
        problem = held(lambda: check(args.url, args.ca, args.expect, args.timeout_s),
                       marker(args.url), args.hold_s)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
