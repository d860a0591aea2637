"""``python -m lab.health URL``: exit 0 when URL answers 200 (and the JSON fields asked for),
or, for ``tcp://HOST:PORT``, when it accepts a connection.

The healthcheck of docker-compose.yml's services, standard library only so that it starts
fast: ``python -m lab.health https://cloud/readyz --ca /var/lib/pinhole/ca.pem`` or
``python -m lab.health http://127.0.0.1:9100/healthz --expect control=true``;
``python -m lab.health tcp://10.99.0.3:8888`` for the proxy.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence


def check(url: str, ca: str | None, expect: Sequence[str], timeout_s: float) -> str | None:
    """``None`` when healthy, else why not."""
    if url.startswith("tcp://"):
        host, _, port = url.removeprefix("tcp://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=timeout_s).close()
        except (OSError, ValueError) as exc:
            return f"{url}: {exc}"
        return None
    context = ssl.create_default_context(cafile=ca) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as answer:
            body = answer.read()
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {getattr(exc, 'reason', exc)}"
    if not expect:
        return None
    try:
        fields = json.loads(body)
    except ValueError:
        return f"{url} did not answer JSON"
    for item in expect:
        key, _, want = item.partition("=")
        got = json.dumps(fields.get(key)).strip('"')
        if got != want:
            return f"{url}: {key} is {got}, not {want}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.health", description=__doc__)
    p.add_argument("url", help="http:// or https:// URL to GET, or tcp://HOST:PORT to connect to")
    p.add_argument("--ca", default=None, help="CA file for an https URL")
    p.add_argument("--expect", action="append", default=[], metavar="FIELD=VALUE",
                   help="a top-level JSON field and its value (true, 3, ok); repeatable")
    p.add_argument("--timeout-s", type=float, default=3.0, help="give up after this long")
    args = p.parse_args(argv)
    problem = check(args.url, args.ca, args.expect, args.timeout_s)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
