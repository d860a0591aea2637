"""Failover: from a fault of the node carrying a two-party call to media back for both.

Scenarios (``--scenarios``): the node killed (SIGKILL) or hung (SIGSTOP), on the
memory store (one cloud process) and on Redis with two cloud replicas behind
the stack's balancer (``pinhole-lab stack --store redis --replicas 2``), each
with the default cloud settings. Each run starts a new meeting of two parties
in this process (:mod:`bench.parties`: what ``pinhole call`` runs), waits for
media both ways, signals the node carrying them and times, per party, the
fault to the first media packet decrypted on its new leg. The faulted node is
then restarted for the next run. JSON on stdout (per run: both parties'
figures, who moved them; per scenario: median and max of the slower party),
progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from bench.parties import start_meeting
from lab.stack import NodeSpec, Stack, running_stack

NODES = (NodeSpec("node-a", "eu", 0), NodeSpec("node-b", "us", 20),
         NodeSpec("node-c", "ap", 40))
SCENARIOS = ("memory-kill", "memory-stop", "redis2-kill", "redis2-stop")
CALL_S = 600.0  # longer than a run: the parties are stopped when it ends
GIVE_UP_S = 10.0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _run(stack: Stack, sig: int) -> dict[str, Any]:
    meeting = await start_meeting(stack, CALL_S)
    try:
        victim = meeting.parties[0].node
        await asyncio.sleep(0.5)
        fault = time.monotonic()
        stack.signal(victim, sig)
        deadline = fault + GIVE_UP_S
        backs: list[float | None] = [None] * len(meeting.parties)
        while time.monotonic() < deadline and None in backs:
            await asyncio.sleep(0.02)
            backs = [p.back_after(fault) for p in meeting.parties]
        return {
            "victim": victim, "signal": signal.Signals(sig).name,
            "back_ms": [None if b is None else round(b * 1000, 1) for b in backs],
            "to": [p.node for p in meeting.parties],
            "asked": [p.call.asked for p in meeting.parties],
        }
    finally:
        await meeting.close()
        await stack.restart_node(victim)


async def _scenario(name: str, runs: int) -> dict[str, Any]:
    store, fault = name.split("-")
    sig = signal.SIGKILL if fault == "kill" else signal.SIGSTOP
    replicas = 2 if store == "redis2" else 1
    with tempfile.TemporaryDirectory(prefix="pinhole-failover-") as tmp:
        async with running_stack(NODES, state_dir=Path(tmp),
                                 store="redis" if replicas > 1 else "memory",
                                 replicas=replicas) as stack:
            out = []
            for i in range(runs):
                result = await _run(stack, sig)
                _say(f"{name} run {i + 1}/{runs}: {result['victim']} {result['signal']}: "
                     f"media back after {result['back_ms']} ms on {result['to']}")
                out.append(result)
    slowest = [max(r["back_ms"]) for r in out if None not in r["back_ms"]]
    return {
        "scenario": name, "runs": out, "failed_runs": runs - len(slowest),
        "median_ms": statistics.median(slowest) if slowest else None,
        "max_ms": max(slowest) if slowest else None,
    }


async def _main(scenarios: list[str], runs: int) -> dict[str, Any]:
    return {"runs_per_scenario": runs,
            "scenarios": [await _scenario(name, runs) for name in scenarios]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="faults per scenario (default 5)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help=f"comma-separated, from {', '.join(SCENARIOS)}")
    p.add_argument("--json", action="store_true", help="JSON on stdout (always; kept for "
                   "symmetry with the other commands)")
    args = p.parse_args(argv)
    chosen = [s for s in args.scenarios.split(",") if s]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    print(json.dumps(uvloop.run(_main(chosen, args.runs)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
