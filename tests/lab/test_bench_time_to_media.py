"""``bench/time_to_media.py`` runs through the firewall lab and prints its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.prereqs import require_root, require_tool

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]


def test_time_to_media_times_each_profile() -> None:
    require_root()
    require_tool("nft")
    require_tool("conntrack")
    out = subprocess.run(
        [sys.executable, "-m", "bench.time_to_media", "--runs", "1", "--profiles",
         "open,no-udp"],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=240,
    ).stdout
    result = json.loads(out)
    profiles = result["profiles"]
    assert set(profiles) == {"open", "no-udp"}
    # content: TCP 5004 leads its ladder; a later stream rung may authenticate first (RFC
    # 8305 §5), so the verdict is "a stream rung that profile lets out", not which one
    for name, transport, content_rungs in (
            ("open", "udp/5004", {"tcp/5004", "tcp/33434", "tls/443"}),
            ("no-udp", "tcp/5004", {"tcp/5004", "tls/443"})):
        timed = profiles[name]
        assert timed["transport"] == transport, timed
        assert timed["failures"] == [] and len(timed["samples_ms"]) == 1, timed
        for key in ("median_ms", "connect_median_ms"):
            assert isinstance(timed[key], float) and timed[key] > 0, timed
        content = timed["content"]  # the speaker presents: time to its first frame
        assert content["failures"] == [] and len(content["samples_ms"]) == 1, content
        assert content["transport"] in content_rungs, content
        assert isinstance(content["median_ms"], float) and content["median_ms"] > 0, content


def test_time_to_media_measures_the_hybrid_profile() -> None:
    """The hybrid profile is measured, not skipped: media on udp/5004 to the hybrid node (its
    clients have the proxy configured; media does not take it)."""
    require_root()
    for tool in ("nft", "conntrack", "tinyproxy"):
        require_tool(tool)
    out = subprocess.run(
        [sys.executable, "-m", "bench.time_to_media", "--runs", "1", "--profiles", "hybrid"],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=240,
    ).stdout
    timed = json.loads(out)["profiles"]["hybrid"]
    assert (timed["transport"], timed["node"]) == ("udp/5004", "hybrid-acme"), timed
    assert timed["failures"] == [] and len(timed["samples_ms"]) == 1, timed
