"""Joins per second and join latency (p50/p99) on the memory and the Redis store, same run.

For each store the cloud is the service itself (``python -m cloud``, its own
process, pinned to core 0, plain HTTP on a loopback port: TLS cost is not what
is compared); the load generator, a real media node control channel
(``media_node.control.ControlChannel`` with its engine, no media listeners)
answering the leg allocations, and Redis share core 1, so the generator never
competes with the cloud for its core. ``--devices`` devices register and
report fresh reachability, then:

- closed loop (default): every device joins one of ``--devices / 10`` meetings
  with ``--concurrency`` joins in flight: the most joins per second;
- open loop (``--rate R --seconds S``): ``R × S`` joins start on a fixed
  schedule, ``1/R`` apart, whether or not earlier ones have finished (ten per
  meeting, the devices taking turns); each latency counts from the join's
  scheduled start, so a cloud that falls behind shows it in its p99 instead
  of slowing the generator down (no coordinated omission). The generator's
  garbage collector is off while joins run, so its pauses are not counted
  as the cloud's latency.

The backends alternate (memory, redis, redis, memory, …) over ``--rounds``
rounds. Each round reports the cloud's CPU seconds per second (``cloud_cpu``)
and the generator's (``gen_cpu``). JSON on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from cloud.identity import Org
from lab.net import free_port, wait_for_port
from media_node.cascade import cloud_dialler
from media_node.control import ControlChannel, EventOutbox
from media_node.engine import Engine
from media_node.settings import NodeSettings
from wire.models import Endpoint
from wire.transports import UDP_5004

ORG = Org("bench", "bench-key", "bench-hybrid")
SECRET = "bench-node-secret"


CLOUD_CORE, GENERATOR_CORE = 0, 1
#: a generator using this much of its core may be what limits the joins per second
GEN_SATURATED = 0.9


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _pin(core: int) -> None:
    """Pin the calling process to ``core`` when the machine has it (a 1-core box: no pin)."""
    if core < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {core})


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _cloud(workdir: Path, store_url: str) -> tuple[asyncio.subprocess.Process, str]:
    """The cloud service, ``python -m cloud`` as deployed (less TLS), alone on its core."""
    orgs = workdir / "orgs.json"
    orgs.write_text(json.dumps({"orgs": [{"id": ORG.id, "enrollment_key": ORG.enrollment_key}]}))
    state = workdir / "cloud-state.json"
    state.unlink(missing_ok=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cloud", "--listen", "127.0.0.1", "--port", str(free_port()),
        "--store", store_url, "--orgs", str(orgs), "--heartbeat-s", "2",
        "--state-file", str(state), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, preexec_fn=lambda: _pin(CLOUD_CORE),
        env={**os.environ, "PINHOLE_NODE_SECRET": SECRET})
    for _ in range(600):
        if state.exists() and state.read_text():
            return proc, str(json.loads(state.read_text())["url"])
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    proc.kill()
    await proc.wait()
    raise SystemExit(f"bench/join.py: the cloud did not start on {store_url} "
                     "(run python -m cloud by hand to see why)")


def _wait_seconds(pid: int) -> float:
    """Seconds process ``pid`` was runnable but waited for a CPU (``/proc/PID/schedstat``;
    -1 where the kernel keeps no such statistics)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except OSError:
        return -1.0


def rss_kb(pid: int) -> int:
    """Resident memory of process ``pid`` in kB (``VmRSS`` in ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def flush(redis_url: str) -> None:
    """Empty the Redis at ``redis_url`` (``redis://127.0.0.1:PORT/DB``): a clean store."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    writer.write(b"FLUSHALL\r\n")
    await reader.readline()
    writer.close()


async def start_redis(workdir: Path) -> tuple[asyncio.subprocess.Process, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench/join.py: needs redis-server (make system-deps, as root)")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(workdir), stdout=asyncio.subprocess.DEVNULL)
    await wait_for_port("127.0.0.1", port)
    return proc, f"redis://127.0.0.1:{port}/0"


async def measure(workdir: Path, store_url: str, devices: int, concurrency: int,
                  rate: float = 0.0, seconds: float = 0.0) -> dict[str, Any]:
    cloud, base = await _cloud(workdir, store_url)
    try:
        return await _load(cloud.pid, base, devices, concurrency, rate, seconds) | {
            "store": store_url.split(":")[0]}
    finally:
        cloud.terminate()
        await cloud.wait()


async def _load(cloud_pid: int, base: str, devices: int, concurrency: int, rate: float,
                seconds: float) -> dict[str, Any]:
    node_settings = NodeSettings(cloud=base, node_secret=SECRET, node_id="bench-node",
                                 advertise="127.0.0.1", capacity=1_000_000)
    outbox = EventOutbox()
    engine = Engine("bench-node", capacity=1_000_000, emit=outbox.put)
    channel = ControlChannel(node_settings, engine,
                             [Endpoint(rung=UDP_5004.name, transport=UDP_5004.transport,
                                       port=5004)], None,
                             dial=cloud_dialler(), outbox=outbox)
    registered = asyncio.Event()
    node_task = asyncio.create_task(channel.run_forever(registered))
    await registered.wait()
    connector = aiohttp.TCPConnector(limit=512 if rate else concurrency * 2)
    async with aiohttp.ClientSession(base_url=base, connector=connector) as http:
        while True:  # the node's control channel is up once the cloud lists it healthy
            async with http.post("/v1/devices", json={"org": ORG.id, "enrollment_key":
                                                      ORG.enrollment_key}) as r:
                probe = await r.json()
            if probe["nodes"] and probe["nodes"][0]["healthy"]:
                break
            await asyncio.sleep(0.05)
        limit = asyncio.Semaphore(concurrency)
        tokens: list[str] = []

        async def enroll(i: int) -> None:
            async with limit:
                async with http.post("/v1/devices", json={
                        "org": ORG.id, "enrollment_key": ORG.enrollment_key,
                        "name": f"d{i}"}) as r:
                    body = await r.json()
                headers = {"Authorization": f"Bearer {body['token']}"}
                report = {"results": [{"node_id": "bench-node", "rung": UDP_5004.name,
                                       "reachable": True, "rtt_ms": 10.0}]}
                async with http.put(f"/v1/devices/{body['device_id']}/reachability",
                                    json=report, headers=headers) as r:
                    assert r.status == 200, await r.text()
                tokens.append(body["token"])

        _say(f"  registering {devices} devices with fresh reports …")
        await asyncio.gather(*(enroll(i) for i in range(devices)))
        joins = int(rate * seconds) if rate else devices
        meetings = []
        for _ in range(max(1, -(-joins // 10))):  # ten a meeting, the last one short
            async with http.post("/v1/meetings", json={},
                                 headers={"Authorization": f"Bearer {tokens[0]}"}) as r:
                meetings.append((await r.json())["id"])
        latencies: list[float] = []
        failures = 0

        async def join(i: int, token: str) -> None:
            nonlocal failures
            async with limit:
                started = time.perf_counter()
                async with http.post(f"/v1/meetings/{meetings[i % len(meetings)]}/participants",
                                     json={}, headers={"Authorization": f"Bearer {token}"}) as r:
                    await r.read()
                    ok = r.status == 201
                latencies.append((time.perf_counter() - started) * 1000)
                failures += not ok

        async def scheduled(i: int, at: float) -> None:
            nonlocal failures
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            token = tokens[i % len(tokens)]
            async with http.post(f"/v1/meetings/{meetings[i // 10]}/participants", json={},
                                 headers={"Authorization": f"Bearer {token}"}) as r:
                await r.read()
                failures += r.status != 201
            latencies.append((time.perf_counter() - at) * 1000)

        # the generator's own collector pauses would count as the cloud's latency
        gc.collect()
        gc.freeze()
        gc.disable()
        started = time.perf_counter()
        cpu_before = (_cpu_seconds(cloud_pid), time.process_time(), _wait_seconds(cloud_pid))
        rss_before = rss_kb(cloud_pid)
        if rate:
            _say(f"  open loop: {joins} joins at {rate:g}/s into {len(meetings)} meetings …")
            await asyncio.gather(*(scheduled(i, started + 0.05 + i / rate)
                                   for i in range(joins)))
        else:
            _say(f"  joining {devices} devices into {len(meetings)} meetings, "
                 f"{concurrency} in flight …")
            await asyncio.gather(*(join(i, t) for i, t in enumerate(tokens)))
        elapsed = time.perf_counter() - started
        cloud_cpu = (_cpu_seconds(cloud_pid) - cpu_before[0]) / elapsed
        gen_cpu = (time.process_time() - cpu_before[1]) / elapsed
        waited = _wait_seconds(cloud_pid)
        cloud_wait = (waited - cpu_before[2]) / elapsed if cpu_before[2] >= 0 else None
        rss_after = rss_kb(cloud_pid)
        gc.enable()
        gc.unfreeze()
    node_task.cancel()
    await asyncio.gather(node_task, return_exceptions=True)
    latencies.sort()
    return {
        "mode": "open" if rate else "closed",
        "offered_per_s": rate or None,
        "devices": devices,
        "joins": len(latencies),
        "failures": failures,
        "joins_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
        "legs_on_node": len(engine.legs),
        "cloud_cpu": round(cloud_cpu, 2),
        # runnable, waiting for its core: others' processes had it
        "cloud_wait": None if cloud_wait is None else round(cloud_wait, 2),
        "gen_cpu": round(gen_cpu, 2),
        "joins_per_cloud_cpu_s": round(len(latencies) / elapsed / cloud_cpu, 1)
        if cloud_cpu > 0 else None,
        "generator_saturated": gen_cpu >= GEN_SATURATED,
        # the cloud's memory before the joins (devices registered, meetings made) and after
        "cloud_rss_kb": {"before_joins": rss_before, "after_joins": rss_after},
    }


async def run(devices: int, concurrency: int, rounds: int, rate: float = 0.0,
              seconds: float = 0.0) -> dict[str, Any]:
    _pin(GENERATOR_CORE)  # the generator, the node and (inherited) Redis
    with tempfile.TemporaryDirectory(prefix="pinhole-bench-") as tmp:
        redis_proc, redis_url = await start_redis(Path(tmp))
        try:
            results: list[dict[str, Any]] = []
            for i in range(rounds):
                order = ["memory", redis_url] if i % 2 == 0 else [redis_url, "memory"]
                for url in order:
                    if url != "memory":  # a clean Redis for every round
                        await flush(url)
                    _say(f"round {i + 1}/{rounds}")
                    result = await measure(Path(tmp), url, devices, concurrency, rate, seconds)
                    _say(f"  {result['store']}: {result['joins_per_s']} joins/s, "
                         f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
                         f"cloud CPU {result['cloud_cpu']}, gen CPU {result['gen_cpu']}")
                    results.append(result)
        finally:
            redis_proc.terminate()
            await redis_proc.wait()

    def median(store: str, key: str) -> float:
        """Over the rounds that have the figure: a round too short for the CPU clock's
        tick (a few joins) has no joins per CPU-second (0.0 then)."""
        values = [r[key] for r in results if r["store"] == store and r[key] is not None]
        return float(statistics.median(values)) if values else 0.0

    memory_rate = median("memory", "joins_per_s")
    memory_per_cpu = median("memory", "joins_per_cloud_cpu_s")
    return {
        "benchmark": "join",
        "what": "POST /v1/meetings/{id}/participants over loopback HTTP, leg allocated by a "
                "real node control channel; devices with fresh reachability reports",
        "mode": f"open loop, {rate:g} joins/s for {seconds:g} s" if rate
        else f"closed loop, {concurrency} in flight",
        "memory": {k: median("memory", k) for k in FIGURES},
        "redis": {k: median("redis", k) for k in FIGURES},
        "redis_throughput_ratio": round(median("redis", "joins_per_s") / memory_rate, 3)
        if memory_rate else None,
        # the same per CPU-second of the cloud: fair when the generator limited a round
        "redis_per_cloud_cpu_ratio": round(
            median("redis", "joins_per_cloud_cpu_s") / memory_per_cpu, 3)
        if memory_per_cpu and median("redis", "joins_per_cloud_cpu_s") else None,
        "generator_saturated": any(r["generator_saturated"] for r in results),
        "rounds": results,
    }


FIGURES = ("joins_per_s", "joins_per_cloud_cpu_s", "p50_ms", "p99_ms")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=4000, help="registered devices (4000)")
    p.add_argument("--concurrency", type=int, default=16, help="joins in flight (16)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per store (3)")
    p.add_argument("--rate", type=float, default=0.0,
                   help="open loop: joins started per second (off: closed loop)")
    p.add_argument("--seconds", type=float, default=10.0,
                   help="open loop: how long joins keep starting (10)")
    p.add_argument("--json", action="store_true", help="JSON only (it is always JSON on stdout)")
    a = p.parse_args(argv)
    if a.rate < 0 or a.seconds <= 0 or a.rounds < 1 or a.devices < 10:
        p.error("--rate >= 0, --seconds > 0, --rounds >= 1 and --devices >= 10, please")
    print(json.dumps(uvloop.run(run(a.devices, a.concurrency, a.rounds, a.rate, a.seconds)),
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
