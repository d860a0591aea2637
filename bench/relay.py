"""SRTP packets/s through the real media-node relay, against the C relay in the same run.

Both relays get the same SRTP stream (172 bytes on the wire, AES_CM_128_HMAC_SHA1_80)
from the C load generator (``bench/srtp_loadgen.c``, the shared loadgen plus
libsrtp) and forward it to the generator's sink:

- ``node``: ``bench/relay_node.py`` — the media node's engine and UDP listener on
  uvloop: authenticate + decrypt with the sender leg's context, check the SSRC,
  re-protect with the receiver leg's context, send;
- ``c_relay``: ``c_echo --relay-to`` (``bench/c_echo.c``, the reference C relay),
  forwarding only.

The server runs on core 0 and the generator on core 1; the two configurations
alternate (A B A B …) and each round's ratio is reported, with the median.
Output: one JSON object on stdout; progress on stderr.
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
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _build(workdir: Path) -> tuple[Path, Path]:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise SystemExit("bench/relay.py: needs gcc (apt-get install gcc)")
    if not Path("/usr/include/srtp2/srtp.h").exists():
        raise SystemExit("bench/relay.py: needs libsrtp2-dev (make system-deps, as root)")
    c_echo_src = HERE / "c_echo.c"
    loadgen, c_echo = workdir / "srtp_loadgen", workdir / "c_echo"
    subprocess.run([gcc, "-O2", "-o", str(loadgen), str(HERE / "srtp_loadgen.c"), "-lsrtp2"],
                   check=True)
    subprocess.run([gcc, "-O2", "-o", str(c_echo), str(c_echo_src)], check=True)
    return loadgen, c_echo


def _pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and os.cpu_count() else []


def _round(config: str, loadgen: Path, c_echo: Path, duration: float) -> dict[str, Any]:
    port, src, sink = _free_port(), _free_port(), _free_port()
    key = secrets.token_hex(30)
    if config == "node":
        server = subprocess.Popen(
            [*_pin(0), sys.executable, "-m", "bench.relay_node", "--port", str(port),
             "--src-port", str(src), "--sink-port", str(sink), "--key", key],
            stdout=subprocess.PIPE, text=True, cwd=HERE.parent)
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("bench/relay.py: the relay node did not start")
    else:
        server = subprocess.Popen([*_pin(0), str(c_echo), "--port", str(port),
                                   "--relay-to", f"127.0.0.1:{sink}"], text=True,
                                  stdout=subprocess.DEVNULL)
        time.sleep(0.3)
    try:
        out = subprocess.run(
            [*_pin(1), str(loadgen), "--target", f"127.0.0.1:{port}", "--mode", "srtp",
             "--key", key, "--src-port", str(src), "--sink-port", str(sink), "--size", "172",
             "--duration", str(duration), "--server-pid", str(server.pid), "--label", config],
            check=True, capture_output=True, text=True).stdout
    finally:
        server.terminate()
        server.wait()
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="A/B rounds (default 3)")
    p.add_argument("--duration", type=float, default=4.0, help="seconds measured per run")
    p.add_argument("--json", action="store_true", help="JSON only (it is always JSON on stdout)")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pinhole-bench-") as tmp:
        loadgen, c_echo = _build(Path(tmp))
        rounds: list[dict[str, Any]] = []
        for i in range(a.rounds):
            pair: dict[str, dict[str, Any]] = {}
            for config in ("node", "c_relay") if i % 2 == 0 else ("c_relay", "node"):
                _say(f"round {i + 1}/{a.rounds}: {config} …")
                pair[config] = _round(config, loadgen, c_echo, a.duration)
                _say(f"  {config}: {pair[config]['rate']:.0f} packets/s, "
                     f"server CPU {pair[config]['server_cpu']:.2f}")
            ratio = pair["node"]["rate"] / pair["c_relay"]["rate"] if pair["c_relay"]["rate"] \
                else 0.0
            rounds.append({"node": pair["node"], "c_relay": pair["c_relay"],
                           "ratio": round(ratio, 3)})
    summary = {
        "benchmark": "relay",
        "what": "SRTP packets/s relayed (authenticate + decrypt + re-encrypt + send), 172 B, "
                "AES_CM_128_HMAC_SHA1_80, server on core 0, generator on core 1",
        "node_rate_median": statistics.median(r["node"]["rate"] for r in rounds),
        "c_relay_rate_median": statistics.median(r["c_relay"]["rate"] for r in rounds),
        "ratio_median": statistics.median(r["ratio"] for r in rounds),
        "rounds": rounds,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
