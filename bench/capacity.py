"""Capacity: the participants one media node holds, and the joins one cloud replica holds.

Measured for real on this machine, each limit found by a ramp: steps double from
a start while they hold, then bisect between the last that held and the first
that did not, to within 5 % (``RESOLUTION``).

- media node: participants in meetings of ``--meeting-size``, every one sending
  audio, 50 SRTP packets a second (20 ms; 172 B on the wire,
  AES_CM_128_HMAC_SHA1_80), each forwarded to the others of its meeting. A step is
  a fresh node (the service's engine, UDP listener and compiled data plane:
  ``bench/capacity_node.py``) on core 0 and the load generator
  (``bench/srtp_loadgen.c --streams``: open loop, a source address, SSRC and libsrtp
  session per participant) on core 1. A step holds while the node loses at most
  1 % of what it should forward. The capacity is the most participants that held.
  A step that lost more while its generator fell behind (90 % of its core, over
  1 % of packets sent a period late, or its own socket dropping) may have
  measured the generator: the ramp stops there and gives no figure.
- memory per leg: a node's RSS with no legs, and with ``--legs`` legs once media
  has crossed every one: (RSS_N - RSS_0) / N.
- cloud replica: open-loop joins as ``bench/join.py`` makes them (``python -m
  cloud`` on core 0; the generator, a real node control channel answering the leg
  allocations, and Redis on core 1), a fresh cloud each step, on the memory store
  and on a real ``redis-server``. A step holds while the join p99 is at most
  100 ms and at most 1 % of joins fail (failed joins are counted apart, their
  latency is in the p99). The replica holds the fastest rate that held; the
  participants it holds are those it joined at that rate in ``--seconds`` and that
  are still in their meetings at the end (the node's legs), with its memory per
  participant joined.

Each step reports what it offered, what came through, and the CPU and memory
of the process under test. A shared machine gives the node and the cloud less
than a core: read the CPU % and the node's µs per forwarded packet beside the
counts. JSON on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

from bench import capacity_media, join
from bench.relay import build

LOSS_LIMIT_PCT = 1.0  # of the packets a node should forward
P99_LIMIT_MS = 100.0  # join latency, from its scheduled start
FAILED_LIMIT = 0.01  # of the joins
RESOLUTION = 0.05  # the ramp stops once the limit is known to within this share
JOIN_RATE_UNIT = 10  # joins a second: the ramp's smallest step
JOIN_CONCURRENCY = 16  # devices registering at once before a step's joins


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _missing(parts: set[str], stores: set[str]) -> str | None:
    """What this machine lacks for ``parts``, said as what to install (None: nothing)."""
    if shutil.which("taskset") is None:
        return "taskset (util-linux), to pin the node and the generator to their cores"
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        return "a C compiler (apt-get install gcc) for the load generator"
    if not Path("/usr/include/srtp2/srtp.h").exists():
        return "libsrtp2-dev for the load generator (make system-deps, as root)"
    if (os.cpu_count() or 1) < 2:
        return "two cores: one for the process measured, one for its load generator"
    if "cloud" in parts and "redis" in stores and shutil.which("redis-server") is None:
        return "redis-server (make system-deps, as root)"
    return None


def _next(held: int, over: int | None, most: int, unit: int) -> int | None:
    """The ramp's next value after ``held`` held and ``over`` did not (None: done)."""
    if over is None:
        return min(2 * held, most) if held < most else None
    half = (over - held) // 2 // unit * unit
    if over - held <= max(unit, RESOLUTION * held) or half < unit:
        return None
    return held + half


async def ramp(measure: Callable[[int], Awaitable[dict[str, Any]]], start: int, most: int,
               unit: int, limit: str) -> dict[str, Any]:
    """Steps from ``start`` (doubling, then bisecting, in ``unit``s, at most ``most``);
    each step's ``verdict`` is ``holds``, ``over`` (``limit``) or ``generator``."""
    steps: list[dict[str, Any]] = []
    held, over = 0, None
    value: int | None = start
    while value is not None:
        step = await measure(value)
        steps.append(step)
        if step["verdict"] == "generator":
            return {"held": None, "limited_by": "generator: no figure", "steps": steps}
        if step["verdict"] == "holds":
            held = value
        else:
            over = value
        value = _next(held, over, most, unit)
    return {"held": held, "limited_by": "the largest step asked for" if over is None
            else limit, "steps": steps}


async def media_node(generator: Path, a: argparse.Namespace) -> dict[str, Any]:
    size = a.meeting_size

    async def measure(participants: int) -> dict[str, Any]:
        _say(f"media node: {participants} participants in meetings of {size} …")
        s = await asyncio.to_thread(capacity_media.step, generator, participants, size,
                                    a.seconds, LOSS_LIMIT_PCT)
        _say(f"  {s['offered_pps']:.0f} pps in, {s['forwarded_pps']:.0f} of "
             f"{s['expected_pps']:.0f} forwarded: loss {s['loss_pct']} %, node CPU "
             f"{s['node_cpu_pct']} % (waiting for it {s['node_waiting_for_cpu_pct']} %), "
             f"RSS {s['node_rss_kb']} kB, generator CPU {s['generator_cpu_pct']} %: "
             f"{s['verdict']}")
        return s

    start = -(-a.start // size) * size
    r = await ramp(measure, start, max(start, a.max_participants // size * size), size,
                   f"loss over {LOSS_LIMIT_PCT:g} %")
    return {"meeting_size": size, "pps_per_participant": capacity_media.PPS,
            "capacity_participants": r["held"], "limited_by": r["limited_by"],
            "steps": r["steps"]}


async def replica(workdir: Path, store_url: str, a: argparse.Namespace) -> dict[str, Any]:
    store = store_url.split(":")[0]

    async def measure(rate: int) -> dict[str, Any]:
        _say(f"cloud replica on {store}: {rate} joins/s for {a.seconds:g} s …")
        if store != "memory":
            await join.flush(store_url)  # a clean store every step
        r = await join.measure(workdir, store_url, a.devices, JOIN_CONCURRENCY, rate,
                               a.seconds)
        failed_pct = 100 * r["failures"] / r["joins"]
        holds = r["p99_ms"] <= P99_LIMIT_MS and failed_pct <= 100 * FAILED_LIMIT
        s = {"rate_per_s": rate, "joins": r["joins"], "failed": r["failures"],
             "failed_pct": round(failed_pct, 2), "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
             "joined": r["legs_on_node"], "cloud_cpu_pct": round(100 * r["cloud_cpu"]),
             "cloud_waiting_for_cpu_pct": None if r["cloud_wait"] is None
             else round(100 * r["cloud_wait"]),
             "generator_cpu_pct": round(100 * r["gen_cpu"]), "cloud_rss_kb": r["cloud_rss_kb"],
             # latency counts from each join's scheduled time: a generator behind its schedule
             # only adds to it, so a step that held despite it held
             "verdict": "holds" if holds else "generator" if r["generator_saturated"]
             else "over"}
        _say(f"  p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, {s['failed']} failed, cloud CPU "
             f"{s['cloud_cpu_pct']} % (waiting for it {s['cloud_waiting_for_cpu_pct']} %), "
             f"generator CPU {s['generator_cpu_pct']} %: {s['verdict']}")
        return s

    start = -(-a.join_rate // JOIN_RATE_UNIT) * JOIN_RATE_UNIT
    r = await ramp(measure, start, max(start, a.max_join_rate), JOIN_RATE_UNIT,
                   f"p99 over {P99_LIMIT_MS:g} ms or over {100 * FAILED_LIMIT:g} % failed")
    held = [s for s in r["steps"] if s["rate_per_s"] == r["held"]]
    joined = held[-1]["joined"] if held else None
    rss = held[-1]["cloud_rss_kb"] if held else None
    return {"joins_per_s": r["held"], "limited_by": r["limited_by"],
            "participants_joined": joined,
            "cloud_kb_per_participant": round(
                (rss["after_joins"] - rss["before_joins"]) / joined, 2)
            if rss and joined else None,
            "steps": r["steps"]}


async def run(a: argparse.Namespace) -> dict[str, Any]:
    parts = set(a.parts)
    out: dict[str, Any] = {
        "benchmark": "capacity",
        "limits": {"loss_pct": LOSS_LIMIT_PCT, "join_p99_ms": P99_LIMIT_MS,
                   "join_failed_pct": 100 * FAILED_LIMIT},
        "cores": os.cpu_count(), "loadavg_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="pinhole-bench-") as tmp:
        workdir = Path(tmp)
        generator = build(workdir, ("srtp_loadgen",))["srtp_loadgen"]
        if "node" in parts:
            out["media_node"] = await media_node(generator, a)
        if "memory" in parts:
            _say(f"memory: a node with no legs, then with {a.legs} …")
            out["memory_per_leg"] = await asyncio.to_thread(
                capacity_media.memory_per_leg, generator, a.legs, a.meeting_size)
            _say(f"  {out['memory_per_leg']['kb_per_leg']} kB per leg")
        if "cloud" in parts:
            os.sched_setaffinity(0, {join.GENERATOR_CORE})  # with the node's channel and Redis
            out["cloud_replica"] = {
                "what": "open-loop joins a second that one replica (python -m cloud) holds; "
                        f"participants_joined: joined at that rate in {a.seconds:g} s and "
                        f"still in their meetings at the end; {a.devices} devices registered",
                "seconds": a.seconds, "devices": a.devices}
            if "memory" in a.stores:
                out["cloud_replica"]["memory"] = await replica(workdir, "memory", a)
            if "redis" in a.stores:
                redis, redis_url = await join.start_redis(workdir)
                try:
                    out["cloud_replica"]["redis"] = await replica(workdir, redis_url, a)
                finally:
                    redis.terminate()
                    await redis.wait()
    out["loadavg_after"] = os.getloadavg()[0]
    out["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return out


def _names(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n for n in text.split(",") if n]
        if not names or set(names) - set(choices):
            raise argparse.ArgumentTypeError(f"a comma-separated list of {', '.join(choices)}")
        return names
    return parse


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meeting-size", type=int, default=5, help="participants a meeting (5)")
    p.add_argument("--seconds", type=float, default=10.0,
                   help="measured seconds a step, media and joins (10)")
    p.add_argument("--start", type=int, default=100, help="participants, first step (100)")
    p.add_argument("--max-participants", type=int, default=20_000,
                   help="participants, largest step (20000)")
    p.add_argument("--legs", type=int, default=1000, help="legs for the memory per leg (1000)")
    p.add_argument("--join-rate", type=int, default=50, help="joins a second, first step (50)")
    p.add_argument("--max-join-rate", type=int, default=5000,
                   help="joins a second, largest step (5000)")
    p.add_argument("--devices", type=int, default=200,
                   help="devices registered with the cloud, joining in turn (200)")
    p.add_argument("--stores", type=_names(("memory", "redis")), default=["memory", "redis"],
                   help="the cloud's stores (memory,redis)")
    p.add_argument("--parts", type=_names(("node", "memory", "cloud")),
                   default=["node", "memory", "cloud"],
                   help="what to measure (node,memory,cloud)")
    p.add_argument("--json", action="store_true", help="JSON only (it is always JSON on stdout)")
    a = p.parse_args(argv)
    if not 2 <= a.meeting_size <= 60:
        p.error("--meeting-size: from 2 to 60")
    if a.seconds <= 0 or (a.seconds + capacity_media.WARMUP_S) * capacity_media.PPS > 65_000:
        p.error("--seconds: above 0 and at most 1300")
    if min(a.start, a.max_participants, a.legs, a.join_rate, a.max_join_rate) < 1:
        p.error("--start, --max-participants, --legs, --join-rate, --max-join-rate: at least 1")
    if a.devices < 10:
        p.error("--devices: at least 10")
    missing = _missing(set(a.parts), set(a.stores))
    if missing is not None:
        print(f"bench/capacity.py: needs {missing}", file=sys.stderr)
        return 2
    print(json.dumps(uvloop.run(run(a)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
