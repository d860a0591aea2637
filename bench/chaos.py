"""Chaos soak: many two-party calls while a random media node is killed and restarted.

``--calls`` meetings of two parties each (:mod:`bench.parties`, what ``pinhole
call`` runs) talk for ``--duration`` seconds on a loopback stack of three
nodes (``--store redis --replicas 2`` as an option); every ``--every``
seconds a random node is killed (SIGKILL) and started again. A sampler
watches every party: the time it went without media for more than 100 ms
adds to its gap. At the end, per call: the total media gap of its parties,
the packets lost (sent by one party, never received by the other), the
reassignments, and whether it ended stuck (a party on a node that is not
running, or without media in its last second). JSON on stdout, progress on
stderr. The defaults are the full soak (20 calls, 10 minutes, every 30 s);
pass smaller figures on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from bench.parties import Meeting, Party, start_meeting
from lab.stack import NodeSpec, Stack, running_stack

NODES = (NodeSpec("node-a", "eu", 0), NodeSpec("node-b", "us", 20),
         NodeSpec("node-c", "ap", 40))
GAP_S = 0.1  # 5 packet times without media: a gap


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _sample(parties: list[Party], gaps: dict[int, float], every_s: float = 0.02) -> None:
    last = time.monotonic()
    while True:
        await asyncio.sleep(every_s)
        now = time.monotonic()
        for party in parties:
            heard = party.call.session.last_media_at or 0.0
            if now - heard > GAP_S:
                gaps[id(party)] = gaps.get(id(party), 0.0) + (now - last)
        last = now


async def _chaos(stack: Stack, every_s: float, begin: float, until: float,
                 log: list[dict[str, Any]], busy: list[Party] | None = None) -> None:
    """Kill and restart a random node every ``every_s``; with ``busy``, a random node
    among those carrying one of these parties (so that every fault hits a call)."""
    rng = random.Random()
    while time.monotonic() + every_s < until:
        await asyncio.sleep(every_s)
        carrying = sorted({p.node for p in busy}) if busy else []
        victim = rng.choice(carrying or [spec.id for spec in NODES])
        at = time.monotonic()
        await stack.restart_node(victim)  # SIGKILL, start again, wait until listed
        log.append({"node": victim, "at_s": round(at - begin, 1),
                    "restart_s": round(time.monotonic() - at, 2)})
        _say(f"killed and restarted {victim} ({time.monotonic() - at:.1f} s to come back)")


def _result(meeting: Meeting, gaps: dict[int, float], running: set[str]) -> dict[str, Any]:
    a, b = meeting.parties
    lost = max(0, a.sent() - b.received()) + max(0, b.sent() - a.received())
    stuck = [p.node for p in meeting.parties if p.node not in running] or (
        [] if meeting.flowing(1.0) else ["no media in the last second"])
    return {
        "meeting": meeting.id,
        "gap_s": round(sum(gaps.get(id(p), 0.0) for p in meeting.parties), 3),
        "packets_sent": a.sent() + b.sent(), "packets_lost": lost,
        "legs": [len(p.call.legs) for p in meeting.parties],
        "asked": [p.call.asked for p in meeting.parties],
        "nodes": [p.node for p in meeting.parties], "stuck": stuck,
    }


async def _main(calls: int, duration_s: float, every_s: float, store: str,
                replicas: int, victims: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pinhole-chaos-") as tmp:
        async with running_stack(NODES, state_dir=Path(tmp), store=store,
                                 replicas=replicas) as stack:
            meetings: list[Meeting] = []
            for i in range(calls):
                meetings.append(await start_meeting(stack, duration_s + 600))
                _say(f"call {i + 1}/{calls} up")
            gaps: dict[int, float] = {}
            parties = [p for m in meetings for p in m.parties]
            sampler = asyncio.create_task(_sample(parties, gaps))
            faults: list[dict[str, Any]] = []
            begin = time.monotonic()
            try:
                await _chaos(stack, every_s, begin, begin + duration_s, faults,
                             parties if victims == "busy" else None)
                await asyncio.sleep(max(0.0, begin + duration_s - time.monotonic()))
            finally:
                sampler.cancel()
            running = {name for name, proc in stack.named.items() if proc.returncode is None}
            results = [_result(m, gaps, running) for m in meetings]
            for meeting in meetings:
                await meeting.close()
    return {
        "calls": calls, "duration_s": duration_s, "every_s": every_s, "victims": victims,
        "store": store,
        "replicas": replicas, "faults": faults, "per_call": results,
        "total_gap_s": round(sum(r["gap_s"] for r in results), 3),
        "total_lost": sum(r["packets_lost"] for r in results),
        "total_sent": sum(r["packets_sent"] for r in results),
        "stuck_calls": sum(1 for r in results if r["stuck"]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=20, help="two-party calls (default 20)")
    p.add_argument("--duration", type=float, default=600.0,
                   help="seconds of chaos (default 600)")
    p.add_argument("--every", type=float, default=30.0,
                   help="kill and restart a random node this often (default 30 s)")
    p.add_argument("--store", default="memory", choices=["memory", "redis"],
                   help="the stack's store")
    p.add_argument("--replicas", type=int, default=1, help="cloud replicas (with --store redis)")
    p.add_argument("--victims", default="any", choices=["any", "busy"],
                   help="any node (default), or only nodes carrying a call")
    p.add_argument("--json", action="store_true", help="JSON on stdout (always)")
    args = p.parse_args(argv)
    if args.replicas > 1 and args.store != "redis":
        p.error("--replicas needs --store redis")
    print(json.dumps(uvloop.run(_main(args.calls, args.duration, args.every, args.store,
                                      args.replicas, args.victims)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
