"""Small loopback helpers shared by the lab, the tests and the benchmarks."""

from __future__ import annotations

import asyncio
import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for a server about to start)."""
    with socket.socket() as s:
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
