"""The media node's half of ``bench/capacity.py``: one load step, and memory per leg.

A step starts a fresh node (``bench/capacity_node.py``, pinned to ``NODE_CORE``)
with ``participants`` legs, then the load generator (``bench/srtp_loadgen.c
--streams``, pinned to ``GENERATOR_CORE``): every participant sends 50 SRTP packets
a second, open loop (a late node gets no respite), and the generator counts the
copies the node forwards to the others of its meeting. A packet counts by its
RTP sequence number, sent in the measured window or not, so what is still in
flight when the window closes is not lost.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.capacity_node import ADDR_BASE, SSRC_BASE
from bench.join import rss_kb
from bench.relay import SIZE
from lab.net import free_port

ROOT = Path(__file__).resolve().parents[1]
NODE_CORE, GENERATOR_CORE = 0, 1
PPS = 50  # packets a participant sends a second: 20 ms of audio each
WARMUP_S = 1.0  # at most, sent before the measured window: every leg's streams exist then
GEN_SATURATED = 0.9  # generator CPU share from which it may be what limits a step
LATE_LIMIT = 0.01  # share of packets sent over a period late: the node was sent bursts
MEMORY_PPS, MEMORY_S = 10, 0.5  # media on every leg before its memory is read


def pin(core: int) -> list[str]:
    """The command prefix that runs a program on ``core`` only."""
    return ["taskset", "-c", str(core)]


@contextmanager
def _node(participants: int, meeting_size: int, key: str) -> Iterator[tuple[int, int, int]]:
    """A node with its legs routed: yields its pid, its port and the participants' port."""
    port, sink = free_port(), free_port("0.0.0.0")
    node = subprocess.Popen(
        [*pin(NODE_CORE), sys.executable, "-m", "bench.capacity_node", "--port", str(port),
         "--sink-port", str(sink), "--key", key, "--participants", str(participants),
         "--meeting-size", str(meeting_size)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert node.stdout is not None
        if node.stdout.readline().strip() != "ready":
            raise SystemExit(f"bench/capacity.py: a media node with {participants} legs did "
                             "not start (run python -m bench.capacity_node by hand to see why)")
        yield node.pid, port, sink
    finally:
        node.terminate()
        node.wait()


def _generate(generator: Path, pid: int, port: int, sink: int, key: str, participants: int,
              meeting_size: int, pps: float, warmup: float, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        [*pin(GENERATOR_CORE), str(generator), "--target", f"127.0.0.1:{port}", "--mode", "srtp",
         "--key", key, "--sink-port", str(sink), "--size", str(SIZE),
         "--streams", str(participants), "--pps", str(pps), "--fanout", str(meeting_size - 1),
         "--addr-base", ADDR_BASE, "--ssrc-base", str(SSRC_BASE), "--warmup", str(warmup),
         "--duration", str(seconds), "--server-pid", str(pid), "--label", "node"],
        check=True, capture_output=True, text=True, timeout=warmup + seconds + 60).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def step(generator: Path, participants: int, meeting_size: int, seconds: float,
         loss_limit_pct: float) -> dict[str, Any]:
    """``participants`` in meetings of ``meeting_size``, all sending, for ``seconds``."""
    key = secrets.token_hex(30)
    with _node(participants, meeting_size, key) as (pid, port, sink):
        r = _generate(generator, pid, port, sink, key, participants, meeting_size, PPS,
                      min(WARMUP_S, seconds), seconds)
        rss = rss_kb(pid)
    forwarded = r["recv"] / r["duration"]
    cpu = r["server_cpu"]
    loss = 100.0 * (1 - r["recv"] / r["expected"]) if r["expected"] else 100.0
    # a step that held with a generator behind its schedule held bursts too; one that did not
    # may have lost the bursts, or what the generator's own socket dropped
    unfit = (r["gen_cpu"] >= GEN_SATURATED or r["sink_drops"] != 0 or r["send_err"] > 0
             or r["late"] > LATE_LIMIT * r["sent"])
    return {
        "participants": participants,
        "meetings": participants // meeting_size,
        "offered_pps": round(r["in_rate"], 1),
        "expected_pps": round(r["expected"] / r["duration"], 1),
        "forwarded_pps": round(forwarded, 1),
        "loss_pct": round(loss, 3),
        "node_cpu_pct": round(100 * cpu, 1),
        "node_rss_kb": rss,
        # the node's CPU time per packet it forwarded (a decrypt shared by M - 1 copies)
        "node_us_per_forwarded": round(1e6 * cpu / forwarded, 2) if forwarded and cpu > 0
        else None,
        # what the kernel dropped, the node's socket full, and how long the node waited,
        # runnable, for its core (others' processes on it): loss with the node's CPU % low
        "node_socket_drops": r["server_drops"],
        "node_waiting_for_cpu_pct": round(100 * r["server_wait"], 1) if r["server_wait"] >= 0
        else None,
        "generator_cpu_pct": round(100 * r["gen_cpu"], 1),
        "generator_late_pct": round(100 * r["late"] / r["sent"], 2) if r["sent"] else None,
        "generator_sink_drops": r["sink_drops"],
        "bad": r["bad"],
        "verdict": "holds" if loss <= loss_limit_pct else "generator" if unfit else "over",
    }


def memory_per_leg(generator: Path, legs: int, meeting_size: int) -> dict[str, Any]:
    """A node's RSS with no legs, and with ``legs`` once media has crossed every one."""
    key = secrets.token_hex(30)
    with _node(0, meeting_size, key) as (pid, _, _):
        empty = rss_kb(pid)
    with _node(legs, meeting_size, key) as (pid, port, sink):
        set_up = rss_kb(pid)
        _generate(generator, pid, port, sink, key, legs, meeting_size, MEMORY_PPS, 0.0,
                  MEMORY_S)
        with_media = rss_kb(pid)
    return {
        "legs": legs,
        "rss_kb_no_legs": empty,
        "rss_kb_legs_set_up": set_up,
        "rss_kb_legs_with_media": with_media,
        "kb_per_leg": round((with_media - empty) / legs, 2),
    }
