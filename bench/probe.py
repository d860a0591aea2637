"""Wall time of a full discovery: every transport of 3, 30 and 100 nodes, concurrently.

The nodes are real media-node data planes (``bench/probe_nodes.py``, one
process, each node on its own loopback address, server pinned to core 0);
the client is ``client.probe.probe`` as a device runs it (UDP, TCP and TLS
STUN probes, 32 in flight, TLS fingerprints checked), pinned to core 1.
JSON on stdout (median of ``--repeat`` runs per size), progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from client.probe import probe, targets
from wire.models import NodeInfo
from wire.transports import Transport

HERE = Path(__file__).resolve().parent


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def run(sizes: list[int], repeat: int) -> dict[str, Any]:
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    if pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1 % (os.cpu_count() or 1)})
    server = await asyncio.create_subprocess_exec(
        *pin, sys.executable, "-m", "bench.probe_nodes", "--count", str(max(sizes)),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=HERE.parent)
    assert server.stdout is not None and server.stdin is not None
    try:
        _say(f"starting {max(sizes)} nodes …")
        nodes = [NodeInfo.model_validate(n)
                 for n in json.loads(await server.stdout.readline())]
        results = []
        for size in sizes:
            walls, reached, total = [], 0, 0
            for _ in range(repeat):
                todo = targets(nodes[:size], [Transport.UDP, Transport.TCP, Transport.TLS])
                started = time.perf_counter()
                outcomes = await probe(todo, timeout_ms=2000)
                walls.append((time.perf_counter() - started) * 1000)
                reached = sum(o.rtt_ms is not None for o in outcomes)
                total = len(outcomes)
            median = statistics.median(walls)
            _say(f"  {size} nodes, {total} probes: {median:.0f} ms ({reached} answered)")
            results.append({"nodes": size, "probes": total, "answered": reached,
                            "wall_ms_median": round(median, 1),
                            "wall_ms": [round(w, 1) for w in walls]})
    finally:
        server.stdin.close()
        await asyncio.wait_for(server.wait(), 10)
    return {"benchmark": "probe",
            "what": "wall time to STUN-probe every endpoint (udp/5004, udp/33434, tcp/5004, "
                    "tcp/33434, tls/443) of N loopback nodes, 32 probes in flight",
            "sizes": results}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="3,30,100", help="node counts (3,30,100)")
    p.add_argument("--repeat", type=int, default=3, help="runs per size (3)")
    p.add_argument("--json", action="store_true", help="JSON only (it is always JSON on stdout)")
    a = p.parse_args(argv)
    sizes = [int(x) for x in a.sizes.split(",")]
    print(json.dumps(asyncio.run(run(sizes, a.repeat)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
