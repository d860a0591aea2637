"""``pinhole-lab netns up | profile | run | down``: the lab by hand, as the docs use it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lab.netns import leftovers
from tests.prereqs import require_root, require_tool

pytestmark = pytest.mark.lab


def _lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", "netns", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_up_profile_run_down() -> None:
    require_root()
    require_tool("nft")
    up = _lab("up", "--profile", "no-udp")
    assert up.returncode == 0, up.stderr
    run_id = json.loads(up.stdout)["run_id"]
    try:
        rules = _lab("run", "--run-id", run_id, "--side", "gw", "--", "nft", "list", "chain",
                     "inet", "pinhole_fw", "outbound")
        assert "tcp dport { 443, 5004 } accept" in rules.stdout, rules.stdout
        assert _lab("profile", "--run-id", run_id, "--profile", "tls-only").returncode == 0
        rules = _lab("run", "--run-id", run_id, "--side", "gw", "--", "nft", "list", "chain",
                     "inet", "pinhole_fw", "outbound")
        assert "tcp dport 443 accept" in rules.stdout and "5004" not in rules.stdout
    finally:
        assert _lab("down", "--run-id", run_id).returncode == 0
    assert leftovers([run_id]) == []
