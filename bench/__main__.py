"""``make bench`` / ``python -m bench``: run every benchmark; one JSON document on stdout.

relay (and SFU fan-out) against the C libsrtp relay, STUN against coturn, joins
closed loop (throughput, memory vs Redis) and open loop (500/s for 10 s:
latency), the probe of 3, 30 and 100 nodes, time to media per firewall profile
(Pinhole's client, and a browser's join page), and the hybrid node's uplink.
``time_to_media``, ``browser_time_to_media`` and ``uplink`` need root (the firewall
lab); without it, a note on stderr says so.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from bench import browser_time_to_media, join, probe, relay, stun, time_to_media, uplink

NEEDS_ROOT = "needs root (the firewall lab: network namespaces and nftables)"


NAMES = ("relay", "stun", "join", "join_open_loop", "probe", "time_to_media",
         "browser_time_to_media", "uplink")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("only", nargs="*", metavar="NAME",
                   help=f"run only these benchmarks, of: {', '.join(NAMES)} (all)")
    p.add_argument("--json", action="store_true", help="JSON only (it is always JSON on stdout)")
    a = p.parse_args(argv)
    unknown = sorted(set(a.only) - set(NAMES))
    if unknown:
        p.error(f"no benchmark {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    results: dict[str, Any] = {}
    benches: list[tuple[str, Callable[[list[str]], int]]] = [
        ("relay", relay.main), ("stun", stun.main), ("join", join.main),
        ("join_open_loop", lambda argv: join.main(
            ["--rate", "500", "--seconds", "10", "--devices", "200", "--rounds", "1"])),
        ("probe", probe.main)]
    root = os.geteuid() == 0
    lab_benches: list[tuple[str, Callable[[list[str]], int]]] = [
        ("time_to_media", time_to_media.main),
        ("browser_time_to_media", browser_time_to_media.main), ("uplink", uplink.main)]
    if root:
        benches += lab_benches
    else:
        for name, _ in lab_benches:
            if not a.only or name in a.only:
                print(f"{name}: skipped, {NEEDS_ROOT}", file=sys.stderr)
    for name, run in benches:
        if a.only and name not in a.only:
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            run([])
        results[name] = json.loads(out.getvalue())
    if not root:
        for name, _ in lab_benches:
            if not a.only or name in a.only:
                results[name] = {"skipped": NEEDS_ROOT}
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
