"""The media node as a process: it stops on SIGTERM even before the cloud ever answered,
and exits 2 with a line naming the flag to change when it cannot serve."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Iterator

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


async def _node_fails(*flags: str) -> str:
    """A node started with ``flags`` that cannot serve: exit 2 and its last line, which
    names what to change (house rule: every CLI error says what to do next)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "media_node", "--cloud", "https://127.0.0.1:1",
        "--advertise", "127.0.0.1", *flags,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    text = err.decode()
    assert proc.returncode == 2 and "Traceback" not in text, text
    return text.strip().splitlines()[-1]


async def test_a_node_with_every_transport_off_says_so() -> None:
    last = await _node_fails("--no-udp", "--no-tcp", "--no-tls")
    assert "leave nothing to serve" in last and "drop one of them" in last


@contextlib.contextmanager
def _taken_port() -> Iterator[int]:
    """A loopback TCP port something else listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


async def test_a_port_already_taken_names_the_flags_to_change() -> None:
    with _taken_port() as port:
        last = await _node_fails("--listen", "127.0.0.1", "--udp-port", "0",
                                 "--udp-last-resort-port", "0", "--tcp-port", str(port),
                                 "--tls-port", "0")
    assert "cannot listen on 127.0.0.1" in last and "--tcp-port" in last


async def test_a_metrics_address_already_taken_names_the_flag() -> None:
    with _taken_port() as port:
        last = await _node_fails("--udp-port", "0", "--udp-last-resort-port", "0",
                                 "--tcp-port", "0", "--tls-port", "0",
                                 "--metrics-listen", f"127.0.0.1:{port}")
    assert f"--metrics-listen 127.0.0.1:{port}: cannot listen" in last
