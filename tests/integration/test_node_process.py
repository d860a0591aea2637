"""The media node as a process: it stops on SIGTERM even before the cloud ever answered."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest

pytestmark = pytest.mark.slow


async def test_sigterm_stops_a_node_whose_cloud_is_unreachable() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "media_node", "--cloud", "https://127.0.0.1:1",
        "--advertise", "127.0.0.1", "--udp-port", "0", "--udp-last-resort-port", "0",
        "--tcp-port", "0", "--tls-port", "0",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    async with asyncio.timeout(15):
        while b"retrying" not in await proc.stderr.readline():  # it is trying to reach it
            pass
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(10):
        code = await proc.wait()
    assert code == 0


async def test_help_explains_every_flag() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "media_node", "--help", stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    text = out.decode()
    for flag in ("--cloud", "--simulated-rtt-ms", "--stun-rate", "--legacy-dc", "--no-tls",
                 "--metrics-listen", "--log-format"):
        assert flag in text
