"""Small loopback helpers shared by the lab, the tests and the benchmarks."""

from __future__ import annotations

import asyncio
import secrets
import socket
from pathlib import Path

# Ports handed to servers about to start come from below the kernel's ephemeral range
# (net.ipv4.ip_local_port_range, 32768-60999 by default). A port the kernel picked is one it
# gives the next outgoing connection too: under a busy suite a client socket took squid's
# port between the pick and squid's bind, and squid exited.
_LOWEST = 10000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(host: str, port: int) -> bool:
    """Nobody holds ``port`` on ``host``, in TCP or UDP (coturn and the nodes take both)."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody holds on ``host`` right now, for a server about to start: drawn at
    random below the ephemeral range, so no outgoing connection takes it meanwhile."""
    top = _ephemeral_low() - 1
    if top > _LOWEST:
        for _ in range(64):
            port = _LOWEST + secrets.randbelow(top - _LOWEST + 1)
            if _bindable(host, port):
                return port
    with socket.socket() as s:  # the whole low range held: let the kernel pick
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def wait_for_port(host: str, port: int, timeout_s: float = 10.0) -> None:
    """Return once something accepts TCP connections on ``host:port``."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                _, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


def free_block() -> str:
    """A ``127.A.B`` prefix (A in 20-219) whose .1 address can be bound right now."""
    for _ in range(50):
        prefix = f"127.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 1}"
        with socket.socket() as s:
            try:
                s.bind((prefix + ".1", 0))
            except OSError:
                continue
        return prefix
    raise OSError("no free 127.x.y.0/24 block found")
