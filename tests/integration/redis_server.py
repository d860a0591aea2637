"""A real ``redis-server`` on a free loopback port, for the Redis store's tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from lab.net import free_port, wait_for_port
from tests.prereqs import require_tool


@asynccontextmanager
async def redis_server(workdir: Path, *options: str) -> AsyncIterator[str]:
    """Start redis-server (with ``options``, e.g. ``--requirepass``); yield its
    ``redis://`` URL; stop it."""
    binary = require_tool("redis-server")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(workdir), *options, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    try:
        await wait_for_port("127.0.0.1", port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        await proc.wait()
