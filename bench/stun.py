"""STUN Binding answers per core: coturn against the media node's two STUN paths, same run.

- ``coturn``: ``turnserver --stun-only`` (Debian's coturn) on one core, one
  relay thread, answering discovery probes;
- ``discovery``: the node (``bench/stun_node.py``: its engine and UDP listener
  on uvloop) answering the same unauthenticated probes, as a device's
  discovery sends them (``wire.stun.build_discovery_probe``: FINGERPRINT);
- ``leg``: the node answering authenticated leg Binding Requests, as a
  client sends them to latch and keep consent (``build_leg_binding``:
  USERNAME, MESSAGE-INTEGRITY, FINGERPRINT), each one validated, latched and
  answered with MESSAGE-INTEGRITY.

The C generator (``bench/srtp_loadgen.c`` in ``stun`` mode) cycles a pool of
4096 requests (distinct transaction ids), keeps ``--window`` in flight and
checks every answer is a Binding success; after draining its socket it naps
``--coalesce-us`` (``bench/relay.py`` says why: otherwise each answer to a
sleeping generator costs the server a wake-up, the slower server more often).
Server on core 0, generator on core 1; the three configurations rotate every
round. The figure compared is answers per CPU-second of the server (``rate /
server_cpu``); a round whose generator saturated gets no ratio. JSON on
stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.relay import COALESCE_US, GEN_SATURATED, _loadavg, _pin, add_coalesce_option, build
from bench.stun_node import CLIENT_UFRAG, NODE_UFRAG, PWD
from wire.stun import build_discovery_probe, build_leg_binding, parse_binding_response

HERE = Path(__file__).resolve().parent
CONFIGS = ("coturn", "discovery", "leg")
TARGETS = {"discovery": 0.50, "leg": 0.40}
POOL = 4096


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_pools(workdir: Path) -> dict[str, Path]:
    """One pool file per request shape: records of u16 little-endian length + bytes."""
    def leg() -> bytes:
        return build_leg_binding(NODE_UFRAG, CLIENT_UFRAG, PWD.encode())

    shapes: dict[str, Callable[[], bytes]] = {"discovery": build_discovery_probe, "leg": leg}
    pools = {}
    for name, make in shapes.items():
        pools[name] = workdir / f"{name}.pool"
        with pools[name].open("wb") as f:
            for _ in range(POOL):
                request = make()
                f.write(struct.pack("<H", len(request)) + request)
    return pools


def _wait_answering(port: int, timeout_s: float = 60.0) -> None:
    """Until a discovery probe to ``port`` gets a Binding success (a server starting on a
    loaded machine may take many seconds: the timeout only guards a hang)."""
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            s.sendto(build_discovery_probe(), ("127.0.0.1", port))
            try:
                parse_binding_response(s.recv(2048))
                return
            except (TimeoutError, ConnectionRefusedError):
                continue
    raise SystemExit(f"bench/stun.py: nothing answers STUN on 127.0.0.1:{port}")


def _server(config: str, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    if config == "coturn":
        binary = shutil.which("turnserver")
        if binary is None:
            raise SystemExit("bench/stun.py: needs coturn's turnserver (make system-deps)")
        argv = [binary, "--stun-only", "-n", "--no-cli", "--no-tcp", "--no-tls", "--no-dtls",
                "-L", "127.0.0.1", "-p", str(port), "--relay-threads", "1",
                "--no-stdout-log", "--simple-log", "--log-file", str(workdir / "coturn.log"),
                "--pidfile", str(workdir / "coturn.pid")]
    else:
        argv = [sys.executable, "-m", "bench.stun_node", "--port", str(port)]
    proc = subprocess.Popen([*_pin(0), *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=HERE.parent)
    try:
        _wait_answering(port)
    except SystemExit:
        proc.kill()
        proc.wait()
        raise
    return proc


def run_once(config: str, tools: dict[str, Path], pools: dict[str, Path], workdir: Path,
             duration: float, window: int, coalesce_us: int) -> dict[str, Any]:
    port = _free_port()
    server = _server(config, port, workdir)
    pool = pools["leg" if config == "leg" else "discovery"]
    try:
        out = subprocess.run(
            [*_pin(1), str(tools["srtp_loadgen"]), "--target", f"127.0.0.1:{port}",
             "--mode", "stun", "--pool", str(pool), "--window", str(window),
             "--duration", str(duration), "--warmup", "0.5", "--server-pid", str(server.pid),
             "--coalesce-us", str(coalesce_us), "--label", config],
            check=True, capture_output=True, text=True, timeout=duration + 30).stdout
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    r: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    cpu = r["server_cpu"]
    per_core = r["rate"] / cpu if cpu > 0 else 0.0
    return {"rate": round(r["rate"], 1), "server_cpu": cpu, "gen_cpu": r["gen_cpu"],
            "per_core_s": round(per_core, 1),
            "us_per_answer": round(1e6 / per_core, 3) if per_core else None,
            "generator_saturated": r["gen_cpu"] >= GEN_SATURATED, "bad": r["bad"]}


def run(rounds: int, duration: float, window: int,
        coalesce_us: int = COALESCE_US) -> dict[str, Any]:
    load_before = _loadavg()
    per_round: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pinhole-bench-") as tmp:
        workdir = Path(tmp)
        tools = build(workdir)
        pools = write_pools(workdir)
        for i in range(rounds):
            order = CONFIGS[i % 3:] + CONFIGS[:i % 3]
            results: dict[str, Any] = {}
            for config in order:
                r = run_once(config, tools, pools, workdir, duration, window, coalesce_us)
                results[config] = r
                _say(f"round {i + 1}/{rounds}, {config}: {r['rate']:.0f} answers/s, server "
                     f"CPU {r['server_cpu']:.2f}, gen CPU {r['gen_cpu']:.2f}: "
                     f"{r['per_core_s']:.0f} per core"
                     f"{' (generator saturated)' if r['generator_saturated'] else ''}")
            coturn = results["coturn"]
            for path in TARGETS:
                fair = not (coturn["generator_saturated"]
                            or results[path]["generator_saturated"])
                ratio = results[path]["per_core_s"] / coturn["per_core_s"] \
                    if fair and coturn["per_core_s"] else None
                results[f"{path}_ratio"] = None if ratio is None else round(ratio, 3)
            per_round.append(results)

    def median(key: str) -> float | None:
        values = [r[key] for r in per_round if r[key] is not None]
        return round(statistics.median(values), 3) if values else None

    return {
        "benchmark": "stun",
        "what": "STUN Binding answers per CPU-second of the server: coturn --stun-only (one "
                "core, one relay thread) vs the node's discovery path and its authenticated "
                "leg-binding path; server core 0, C generator core 1, rotating",
        "discovery_ratio_median": median("discovery_ratio"),
        "leg_ratio_median": median("leg_ratio"),
        "targets": TARGETS,
        "per_core_median": {c: statistics.median(r[c]["per_core_s"] for r in per_round)
                            for c in CONFIGS},
        "rounds": per_round,
        "generator_coalesce_us": coalesce_us,
        "loadavg_before": load_before,
        "loadavg_after": _loadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="rotations of the three (3)")
    p.add_argument("--duration", type=float, default=2.0, help="seconds measured per run (2)")
    p.add_argument("--window", type=int, default=64, help="requests in flight (64)")
    add_coalesce_option(p)
    p.add_argument("--json", action="store_true", help="JSON only (it is always JSON on stdout)")
    a = p.parse_args(argv)
    if a.rounds < 1 or a.duration <= 0 or a.window < 1:
        p.error("--rounds and --window must be at least 1 and --duration positive")
    print(json.dumps(run(a.rounds, a.duration, a.window, a.coalesce_us), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
