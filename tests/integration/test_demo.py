"""make demo tells the whole story without root (what `make demo` runs: python -m lab demo):
act one on an open network ends on udp/5004; act two, where the media nodes run without
UDP listeners, ends on tcp/5004 or tls/443 and shows each rung of the ladder; alice and
bob by name throughout (device ids were printed before)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


async def test_make_demo_tells_both_acts() -> None:
    assert "$(PY) -m lab demo" in (ROOT / "Makefile").read_text()  # the command tested here
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lab", "demo", "--seconds", "1", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out_bytes, err_bytes = await asyncio.wait_for(proc.communicate(), 240)
    out, err = out_bytes.decode(), err_bytes.decode()
    assert proc.returncode == 0, out + err
    assert "Traceback" not in out + err
    open_act, _, no_udp_act = out.partition("act two")
    assert no_udp_act, out
    for name in ("alice", "bob"):
        assert f"{name} latched on udp/5004" in open_act
        assert re.search(rf"{name} latched on (tcp/5004|tls/443)", no_udp_act)
        assert f"{name}'s ladder, best first:" in no_udp_act
    assert re.search(r"udp/5004\s+not offered: no node listens on UDP", no_udp_act)
    assert re.search(r"→ (tcp/5004|tls/443)\s+answered by 3/3 node\(s\); connect: "
                     r"authenticated", no_udp_act)
    assert "dev-" not in out  # names, not device ids
    assert "media found its way both times" in out
