"""SRTP relay and SFU fan-out: the media node against a C libsrtp relay, same run, per core.

Both relays do the same work per packet, on one sender's stream (172 bytes on
the wire, AES_CM_128_HMAC_SHA1_80) in a meeting of ``1 + receivers`` legs:

- ``node``: ``bench/relay_node.py`` — the media node's own engine, UDP
  listener and compiled data plane (``media_node/_plane.c``) on uvloop, the
  route the engine gave the plane: demux, leg lookup by 5-tuple,
  authenticate + decrypt with the sender leg's context, SSRC check, then for
  every other leg re-protect with its context and send;
- ``c_relay``: ``bench/c_srtp_relay.c`` — the same steps in C on the very
  libsrtp build the node runs (pylibsrtp's; see :func:`_node_libsrtp`):
  recvfrom, the latched-source and RTP checks, ``srtp_unprotect``, SSRC
  check, ``srtp_protect`` + ``sendto`` per receiver.

The generator (``bench/srtp_loadgen.c``) protects a pool of packets with
increasing sequence numbers (and rollover counter) before it measures, so
while it measures it only sends and counts what reaches its sink; it keeps
``--window`` packets in flight (one new packet per ``receivers`` packets
out). Once it has drained its socket it naps ``--coalesce-us`` before
waiting again (see the generator's header): on loopback a reply to a
generator asleep in ``recv`` wakes it on the *server's* CPU, a cost no
server sending to clients over a NIC pays, and one that grows the slower the
server is; ``--coalesce-us 0`` measures with it. The server runs on core 0
and the generator on core 1; ``node`` and ``c_relay`` alternate (A B, B A,
…) for every meeting size.

The figure compared is **packets out per CPU-second of the server**
(``rate / server_cpu``), which stays meaningful on a shared machine where
neither process gets a whole core; the cost per output packet is its
inverse in µs. A round whose generator used ≥ ``GEN_SATURATED`` of its core
(or ran out of pool) measured the generator, not the relay: it is reported
but gets no ratio. Output: one JSON object on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.relay_node import receiver_address

HERE = Path(__file__).resolve().parent
GEN_SATURATED = 0.9  # generator CPU share above which a round is not a relay measurement
COALESCE_US = 30  # the generator's nap after a drained receive (srtp_loadgen.c --coalesce-us)
SIZE = 172  # bytes on the wire: 12 RTP header + 150 payload + 10 tag


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _coalesce_us(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError("from 0 to 1000 µs")
    return value


def add_coalesce_option(p: argparse.ArgumentParser) -> None:
    """``--coalesce-us``, the generator's nap after draining its socket (relay and STUN)."""
    p.add_argument("--coalesce-us", type=_coalesce_us, default=COALESCE_US,
                   help=f"the generator's nap after draining its socket, µs ({COALESCE_US}; "
                        "0: it waits in recv and every packet back wakes it)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node_libsrtp() -> list[str]:
    """Linker arguments for the libsrtp the node itself runs: pylibsrtp's own build.

    Debian's libsrtp2 does its crypto through NSS, about 3 µs per protect where
    the copy inside pylibsrtp (on OpenSSL) takes 0.4 µs: an anchor on it would
    flatter the node. The C tools therefore link pylibsrtp's extension module
    (libsrtp is in it, next to the CPython symbols it needs from libpython).
    """
    import pylibsrtp._binding  # only the build needs its path

    libdir = sysconfig.get_config_var("LIBDIR")
    python = f"python{sysconfig.get_config_var('LDVERSION')}"
    return [str(Path(pylibsrtp._binding.__file__).resolve()), f"-L{libdir}", f"-l{python}",
            f"-Wl,-rpath,{libdir}"]


def build(workdir: Path, names: tuple[str, ...] = ("srtp_loadgen", "c_srtp_relay")
          ) -> dict[str, Path]:
    """Compile the generator and the C relay (or only ``names``) into ``workdir``, on the
    node's libsrtp."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise SystemExit("bench/relay.py: needs gcc (apt-get install gcc)")
    if not Path("/usr/include/srtp2/srtp.h").exists():
        raise SystemExit("bench/relay.py: needs libsrtp2-dev for its headers "
                         "(make system-deps, as root)")
    out = {}
    for name in names:
        out[name] = workdir / name
        subprocess.run([gcc, "-O2", "-o", str(out[name]), str(HERE / f"{name}.c"),
                        *_node_libsrtp()], check=True)
    return out


def _pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") else []


def _start_server(config: str, tools: dict[str, Path], port: int, src: int, sink: int,
                  key: str, receivers: int) -> subprocess.Popen[str]:
    if config == "node":
        argv = [sys.executable, "-m", "bench.relay_node", "--port", str(port),
                "--src-port", str(src), "--sink-port", str(sink), "--key", key,
                "--receivers", str(receivers)]
        ready = "ready"
    else:
        argv = [str(tools["c_srtp_relay"]), "--port", str(port), "--key", key,
                "--from", f"127.0.0.1:{src}"]
        for i in range(receivers):
            host, p = receiver_address(i, sink)
            argv += ["--to", f"{host}:{p}"]
        ready = "READY"
    server = subprocess.Popen([*_pin(0), *argv], stdout=subprocess.PIPE, text=True,
                              cwd=HERE.parent)
    assert server.stdout is not None
    if server.stdout.readline().strip() != ready:
        server.kill()
        server.wait()
        raise SystemExit(f"bench/relay.py: the {config} relay did not start")
    return server


def run_once(config: str, tools: dict[str, Path], receivers: int, duration: float,
             window: int, coalesce_us: int) -> dict[str, Any]:
    """One measurement of one relay in a meeting of ``1 + receivers``."""
    port, src, sink = _free_port(), _free_port(), _free_port()
    key = secrets.token_hex(30)
    # enough packets for the warm-up and the run at 600 k packets out per second
    pool = max(50_000, int(600_000 * (duration + 0.5) / receivers))
    server = _start_server(config, tools, port, src, sink, key, receivers)
    try:
        out = subprocess.run(
            [*_pin(1), str(tools["srtp_loadgen"]), "--target", f"127.0.0.1:{port}",
             "--mode", "srtp", "--key", key, "--src-port", str(src), "--sink-port", str(sink),
             "--sink-any", "--size", str(SIZE), "--srtp-pool", str(pool),
             "--fanout", str(receivers), "--window", str(window),
             "--duration", str(duration), "--warmup", "0.5", "--coalesce-us", str(coalesce_us),
             "--server-pid", str(server.pid), "--label", config],
            check=True, capture_output=True, text=True, timeout=duration + 60).stdout
    finally:
        server.terminate()
        server.wait()
    r: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    cpu = r["server_cpu"]
    per_core = r["rate"] / cpu if cpu > 0 else 0.0
    saturated = r["gen_cpu"] >= GEN_SATURATED or bool(r["pool_exhausted"])
    return {"out_rate": round(r["rate"], 1), "in_rate": round(r["in_rate"], 1),
            "server_cpu": r["server_cpu"], "gen_cpu": r["gen_cpu"],
            "out_per_core_s": round(per_core, 1),
            "us_per_output": round(1e6 / per_core, 3) if per_core else None,
            "generator_saturated": saturated, "bad": r["bad"], "reprimes": r["reprimes"]}


def _loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return -1.0


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def run(meetings: list[int], rounds: int, duration: float, window: int,
        coalesce_us: int = COALESCE_US) -> dict[str, Any]:
    results: dict[str, Any] = {}
    load_before = _loadavg()
    with tempfile.TemporaryDirectory(prefix="pinhole-bench-") as tmp:
        tools = build(Path(tmp))
        for size in meetings:
            receivers = size - 1
            per_round: list[dict[str, Any]] = []
            for i in range(rounds):
                pair: dict[str, dict[str, Any]] = {}
                for config in ("node", "c_relay") if i % 2 == 0 else ("c_relay", "node"):
                    r = run_once(config, tools, receivers, duration, window, coalesce_us)
                    pair[config] = r
                    flag = " (generator saturated: no ratio)" if r["generator_saturated"] else ""
                    _say(f"meeting of {size}, round {i + 1}/{rounds}, {config}: "
                         f"{r['out_rate']:.0f} out/s, server CPU {r['server_cpu']:.2f}, "
                         f"gen CPU {r['gen_cpu']:.2f}: {r['out_per_core_s']:.0f} out/s per "
                         f"core{flag}")
                fair = not (pair["node"]["generator_saturated"]
                            or pair["c_relay"]["generator_saturated"])
                # a server CPU under one clock tick (10 ms) reads 0: no per-core rate, no ratio
                c_core, node_core = (pair[c]["out_per_core_s"] for c in ("c_relay", "node"))
                ratio = node_core / c_core if fair and c_core and node_core else None
                per_round.append({**pair, "ratio_per_core": None if ratio is None
                                  else round(ratio, 3)})
            ratios = [r["ratio_per_core"] for r in per_round if r["ratio_per_core"] is not None]
            results[str(size)] = {
                "receivers": receivers,
                "node_us_per_output": _median([r["node"]["us_per_output"] for r in per_round
                                               if r["node"]["us_per_output"]]),
                "c_relay_us_per_output": _median([r["c_relay"]["us_per_output"]
                                                  for r in per_round
                                                  if r["c_relay"]["us_per_output"]]),
                "node_out_per_core_s": _median([r["node"]["out_per_core_s"] for r in per_round]),
                "c_relay_out_per_core_s": _median([r["c_relay"]["out_per_core_s"]
                                                   for r in per_round]),
                "ratio_per_core_median": _median(ratios),
                "rounds": per_round,
            }
    first = results[str(meetings[0])]
    return {
        "benchmark": "relay",
        "what": "SRTP packets relayed per CPU-second of the relay (authenticate + decrypt once, "
                "re-protect + send per receiver), 172 B, AES_CM_128_HMAC_SHA1_80; the node's "
                "engine + UDP listener on uvloop vs a C libsrtp relay doing the same; server on "
                "core 0, generator (pre-protected pool, send only) on core 1, alternating",
        "ratio_median": first["ratio_per_core_median"],
        "target_ratio": 0.60,
        "meetings": results,
        "generator_coalesce_us": coalesce_us,
        "loadavg_before": load_before,
        "loadavg_after": _loadavg(),
        "cores": os.cpu_count(),
        "note": "ratios are per CPU-second, so a shared machine slows both sides alike; a "
                "round whose generator saturated gets no ratio",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="A/B rounds per meeting size (3)")
    p.add_argument("--duration", type=float, default=2.0, help="seconds measured per run (2)")
    p.add_argument("--meetings", default="2,5,10",
                   help="meeting sizes: one speaker, the others listen (2,5,10)")
    p.add_argument("--window", type=int, default=64,
                   help="input packets in flight (64)")
    add_coalesce_option(p)
    p.add_argument("--json", action="store_true", help="JSON only (it is always JSON on stdout)")
    a = p.parse_args(argv)
    meetings = [int(x) for x in a.meetings.split(",") if x]
    if not meetings or any(m < 2 or m > 60 for m in meetings):
        p.error("--meetings: sizes from 2 to 60 (one speaker and at least one listener)")
    if a.rounds < 1 or a.duration <= 0:
        p.error("--rounds must be at least 1 and --duration positive")
    print(json.dumps(run(meetings, a.rounds, a.duration, a.window, a.coalesce_us), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
