"""A cloud whose store does not answer: not ready, says so, one line per backoff step.

Defect pinned down (before: "``--store redis://127.0.0.1:1/0`` prints
'listening' then a full traceback every 2.5 s"): a real ``pinhole-cloud``
process on a Redis URL where nothing listens yet answers ``/readyz`` 503 and
API calls 503 ``store_unavailable`` (JSON, never a 500), writes one line per
backoff step and no traceback, and says "listening" only once the store
answers; when a real redis-server appears on that port it becomes ready and
serves.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lab.net import free_port, wait_for_port
from tests.prereqs import require_tool
from tests.waiting import until, until_async

pytestmark = [pytest.mark.redis, pytest.mark.slow]


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def _register(http: aiohttp.ClientSession, base: str) -> tuple[int, Any]:
    async with http.post(f"{base}/v1/devices", json={
            "org": "acme", "enrollment_key": "acme-key", "name": "d"}) as response:
        return response.status, await response.json()


async def test_an_unreachable_store_is_not_ready_and_quiet(tmp_path: Path) -> None:
    redis_binary = require_tool("redis-server")
    orgs = tmp_path / "orgs.json"
    orgs.write_text(json.dumps({"orgs": [{"id": "acme", "enrollment_key": "acme-key"}]}))
    port, store_port = free_port(), free_port()
    cloud = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cloud", "--listen", "127.0.0.1", "--port", str(port),
        "--store", f"redis://127.0.0.1:{store_port}/0", "--orgs", str(orgs),
        "--state-file", str(tmp_path / "cloud.json"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    redis: asyncio.subprocess.Process | None = None
    base = f"http://127.0.0.1:{port}"
    lines: list[str] = []  # the cloud's log, as it writes it

    async def read_log() -> None:
        assert cloud.stderr is not None
        while line := await cloud.stderr.readline():
            lines.append(line.decode())

    reader = asyncio.create_task(read_log())
    try:
        # a deadline for a hang, not a margin: a cloud started beside a saturated suite
        # once took over 10 s to listen
        await wait_for_port("127.0.0.1", port, timeout_s=60)
        async with aiohttp.ClientSession() as http:
            status, body = await _get(http, f"{base}/readyz")
            assert status == 503 and body["ok"] is False
            assert (await _get(http, f"{base}/healthz"))[0] == 200  # alive, not ready
            assert not (tmp_path / "cloud.json").exists()
            status, body = await _register(http, base)
            assert status == 503 and body["error"] == "store_unavailable", body
            await until(lambda: sum("unreachable (attempt" in line for line in lines) >= 2,
                        "two backoff steps logged")
            redis = await asyncio.create_subprocess_exec(
                redis_binary, "--port", str(store_port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(tmp_path),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

            async def ready() -> bool:
                return (await _get(http, f"{base}/readyz"))[0] == 200

            await until_async(ready, "the cloud became ready", timeout_s=20)
            status, body = await _register(http, base)
            assert status == 201, body
            # written once the watch is ready
            await until(lambda: (tmp_path / "cloud.json").exists(), "the cloud said it listens",
                        timeout_s=20)
    finally:
        cloud.send_signal(signal.SIGTERM)
        await asyncio.wait_for(cloud.wait(), 20)
        await asyncio.wait_for(reader, 20)
        if redis is not None:
            redis.terminate()
            await redis.wait()
    log = "".join(lines)
    assert "Traceback" not in log, log
    listening = [line for line in log.splitlines() if "listening on" in line]
    assert len(listening) == 1, log
    steps = [line for line in log.splitlines() if "unreachable (attempt" in line]
    assert 2 <= len(steps) <= 6, log  # 0.5 s, 1 s, 2 s, 4 s ... not one every 2.5 s forever
    assert log.index(steps[-1]) < log.index(listening[0])  # "listening" once it can serve
    assert "answers again: ready" in log
