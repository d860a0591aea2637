"""Idle connections against a real service process: how many it keeps, and its memory.

    python -m bench.idle_connections [--service node|cloud] [--connections N]
        [--kind silent|partial] [--wait S] [--pythonpath DIR]

Starts ``pinhole-media-node`` (TCP 5004 listener; its cloud unreachable) or
``pinhole-cloud`` (plain HTTP, memory store) on loopback, opens N connections
that send nothing (``silent``) or an unfinished message (``partial``: half
an RFC 4571 frame, or half an HTTP request line), and prints JSON: the
service's RSS before, with the connections open, and ``--wait`` seconds
later, and how many connections it accepted and still holds. With
``--pythonpath`` the service runs from another checkout (a before/after
comparison). Not a test: no pass or fail, numbers only; keep N modest on a
shared machine (descriptors on both sides).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from lab.net import free_port, wait_for_port


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _open(port: int, payload: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    return reader, writer


async def _still_open(reader: asyncio.StreamReader) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(1), 0.01)
    except TimeoutError:
        return True
    except OSError:
        return False
    return bool(data)


async def run(a: argparse.Namespace) -> dict[str, object]:
    port = free_port()
    if a.service == "node":
        argv = ["-m", "media_node", "--cloud", "http://127.0.0.1:9", "--advertise", "127.0.0.1",
                "--no-udp", "--no-tls", "--tcp-port", str(port)]
        payload = b"" if a.kind == "silent" else b"\x00\x40" + b"\x00" * 10
    else:
        argv = ["-m", "cloud", "--listen", "127.0.0.1", "--port", str(port)]
        payload = b"" if a.kind == "silent" else b"GET /healthz HT"
    env = dict(os.environ)
    if a.pythonpath:
        env["PYTHONPATH"] = a.pythonpath
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *argv, env=env, cwd=a.pythonpath or None, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        await wait_for_port("127.0.0.1", port)
        await asyncio.sleep(1.0)
        before = _rss_kb(proc.pid)
        conns = []
        for _ in range(a.connections):
            try:
                conns.append(await _open(port, payload))
            except OSError:
                break
        await asyncio.sleep(1.0)
        opened = [await _still_open(r) for r, _ in conns]
        with_conns = _rss_kb(proc.pid)
        start = time.monotonic()
        await asyncio.sleep(a.wait)
        later = [await _still_open(r) for r, _ in conns]
        after_wait = _rss_kb(proc.pid)
        for _, w in conns:
            w.close()
        await asyncio.sleep(2.0)
        after_close = _rss_kb(proc.pid)
        return {
            "service": a.service, "kind": a.kind, "connections": a.connections,
            "pythonpath": a.pythonpath or "(this checkout)",
            "held_after_1s": sum(opened), f"held_after_{a.wait:g}s": sum(later),
            "waited_s": round(time.monotonic() - start, 1),
            "rss_kb": {"before": before, "with_connections": with_conns,
                       "after_wait": after_wait, "after_close": after_close},
        }
    finally:
        proc.terminate()
        await proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.idle_connections",
                                description=__doc__.split("\n")[0])
    p.add_argument("--service", choices=["node", "cloud"], default="node")
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--kind", choices=["silent", "partial"], default="silent")
    p.add_argument("--wait", type=float, default=15.0, help="seconds to wait with them open")
    p.add_argument("--pythonpath", default="", help="run the service from this checkout")
    a = p.parse_args(argv)
    print(json.dumps(asyncio.run(run(a)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
