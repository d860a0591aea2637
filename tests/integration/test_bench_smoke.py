"""``bench/relay.py`` runs end to end and prints its JSON (figures are never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.prereqs import require, require_tool

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_relay_benchmark_produces_machine_readable_rounds() -> None:
    require_tool("gcc")
    require_tool("taskset")
    require(Path("/usr/include/srtp2/srtp.h").exists(), "needs libsrtp2-dev (make system-deps)")
    out = subprocess.run(
        [sys.executable, "-m", "bench.relay", "--rounds", "1", "--duration", "0.5"],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=120,
    ).stdout
    result = json.loads(out)
    [round_] = result["rounds"]
    for config in ("node", "c_relay"):
        assert round_[config]["mode"] == "srtp" and round_[config]["bad"] == 0
        assert round_[config]["recv"] > 0  # every counted packet passed SRTP at the node
    assert result["ratio_median"] == round_["ratio"]


def test_join_benchmark_reports_both_stores() -> None:
    require_tool("redis-server")
    out = subprocess.run(
        [sys.executable, "-m", "bench.join", "--devices", "20", "--rounds", "1"],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=120,
    ).stdout
    result = json.loads(out)
    assert {r["store"] for r in result["rounds"]} == {"memory", "redis"}
    for r in result["rounds"]:
        assert r["joins"] == 20 and r["failures"] == 0 and r["legs_on_node"] == 20


def test_probe_benchmark_times_each_size() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.probe", "--sizes", "2,5", "--repeat", "1"],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=120,
    ).stdout
    sizes = json.loads(out)["sizes"]
    assert [(s["nodes"], s["probes"], s["answered"]) for s in sizes] == [(2, 8, 8), (5, 20, 20)]


def test_failover_benchmark_times_media_back_for_both_parties() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.failover", "--runs", "1", "--scenarios", "memory-kill"],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=180,
    ).stdout
    [scenario] = json.loads(out)["scenarios"]
    [run] = scenario["runs"]
    assert scenario["failed_runs"] == 0 and len(run["back_ms"]) == 2
    assert run["victim"] not in run["to"]  # both parties ended on another node


def test_chaos_benchmark_reports_every_call() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--calls", "1", "--duration", "8",
         "--every", "3"],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=180,
    ).stdout
    result = json.loads(out)
    [call] = result["per_call"]
    assert result["faults"] and call["packets_sent"] > 0 and call["stuck"] == []
