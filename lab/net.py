"""Small loopback helpers shared by the lab, the tests and the benchmarks."""

from __future__ import annotations

import asyncio
import secrets
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
