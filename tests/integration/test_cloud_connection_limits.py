"""The cloud's listener is bounded, on real sockets.

Defects pinned down (before: "~20,000 idle TLS connections exhaust its
descriptors ... partial request lines stay open; 5,000 /v1/events WebSockets
on one token are all accepted"): the connection past the per-address cap is
refused and counted while other addresses are still served; a silent
connection and a partial request line are closed after ``idle_s``; a TLS
client that never finishes its handshake is closed after ``handshake_s``; a
device's events WebSockets are capped (429, counted).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cloud.app import make_app
from cloud.connections import listen
from cloud.identity import Org, TokenSigner
from cloud.settings import CLOUD_LIMITS, CloudSettings
from cloud.state import CLOUD, Cloud
from cloud.store import MemoryStore
from tests.waiting import until
from wire.tls import issue, server_context

ORGS = {"acme": Org("acme", "acme-key", "")}
FAST = CloudSettings(listen="127.0.0.1", port=0,
                     limits=replace(CLOUD_LIMITS, idle_s=0.5, handshake_s=0.5))


def limited(**limits: Any) -> CloudSettings:
    """:data:`FAST` with some of its connection limits changed."""
    return replace(FAST, limits=replace(FAST.limits, **limits))


@dataclass
class Running:
    cloud: Cloud
    port: int


@asynccontextmanager
async def cloud(settings: CloudSettings,
                context: ssl.SSLContext | None = None) -> AsyncIterator[Running]:
    app = make_app(settings, MemoryStore(), ORGS, TokenSigner())
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    server = await listen(runner, settings, 0, context, app[CLOUD].connections)
    try:
        yield Running(app[CLOUD], int(server.sockets[0].getsockname()[1]))
    finally:
        server.close()
        await runner.cleanup()


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    start = time.monotonic()
    try:
        while await asyncio.wait_for(reader.read(4096), seconds):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - start


async def _metrics(port: int, source: str) -> str:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as http, \
            http.get(f"http://127.0.0.1:{port}/metrics") as response:
        return await response.text()


@pytest.mark.parametrize("payload", [b"", b"GET /healthz HT", b"GET / HTTP/1.1\r\nHost: x\r\n"],
                         ids=["silent", "partial-line", "partial-headers"])
async def test_silent_and_partial_requests_are_closed(payload: bytes) -> None:
    async with cloud(FAST) as running:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        writer.write(payload)
        took = await _closed_within(reader, 5.0)
        writer.close()
        assert took < 5.0
        await until(lambda: running.cloud.connections.open == 0, "the slot given back")


async def test_the_connection_past_the_per_source_cap_is_refused_and_counted() -> None:
    async with cloud(limited(idle_s=30, max_connections_per_source=3)) as running:
        held = [await asyncio.open_connection("127.0.0.1", running.port) for _ in range(3)]
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        assert await _closed_within(reader, 2.0) < 2.0
        assert running.cloud.connections.open == 3
        text = await _metrics(running.port, "127.0.0.2")  # another address is still served
        assert 'pinhole_connection_refusals_total{reason="per_source_cap"} 1' in text
        assert "pinhole_connections 4.0" in text  # three held + this request
        for _, w in (*held, (reader, writer)):
            w.close()


async def test_the_connection_past_the_total_cap_is_refused() -> None:
    async with cloud(limited(idle_s=30, max_connections=2)) as running:
        held = [await asyncio.open_connection("127.0.0.1", running.port) for _ in range(2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port,
                                                       local_addr=("127.0.0.3", 0))
        assert await _closed_within(reader, 2.0) < 2.0
        assert running.cloud.metrics.refusals == {"total_cap": 1}
        for _, w in (*held, (reader, writer)):
            w.close()


async def test_a_tls_handshake_that_never_finishes_is_closed(tmp_path: Path) -> None:
    made = issue(None, ["127.0.0.1"], datetime.datetime.now(datetime.UTC))
    (tmp_path / "c.pem").write_bytes(made.cert_pem)
    (tmp_path / "c.key").write_bytes(made.key_pem)
    context = server_context(str(tmp_path / "c.pem"), str(tmp_path / "c.key"))
    async with cloud(limited(idle_s=30), context) as running:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        writer.write(b"\x16\x03\x01")
        assert await _closed_within(reader, 5.0) < 5.0
        writer.close()


async def test_a_devices_events_websockets_are_capped() -> None:
    """Before: 5,000 /v1/events WebSockets on one token were all accepted (+231 MB)."""
    async with cloud(limited(idle_s=30)) as running, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{running.port}"
        async with http.post(f"{base}/v1/devices", json={
                "org": "acme", "enrollment_key": "acme-key", "name": "d"}) as response:
            token = (await response.json())["token"]
        url = f"{base}/v1/events?token={token}"
        sockets = [await http.ws_connect(url) for _ in range(4)]
        async with http.get(url, headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                          "Sec-WebSocket-Version": "13",
                                          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
                            ) as refused:
            assert refused.status == 429
            assert json.loads(await refused.text())["error"] == "too_many_websockets"
        assert running.cloud.metrics.refusals == {"events_per_device_cap": 1}
        await sockets[0].close()
        await until(lambda: sum(running.cloud.events_open.values()) == 3, "one stream closed")
        sockets[0] = await http.ws_connect(url)  # a closed one frees its place
        for ws in sockets:
            await ws.close()
        await until(lambda: not running.cloud.events_open, "every stream closed")
