"""Health by missed heartbeats: a node that stays connected but stops heartbeating.

"Missed heartbeats (heartbeat_s × heartbeat_misses) make a node unhealthy:
it leaves node lists and assignment". Pins down a surviving mutant: removing the
heartbeat-miss check from the cloud's health was caught by nothing, because only the
closed-control-channel path was tested. Here the node's control WebSocket stays open
(it even keeps answering commands) while its heartbeats stop; a second node keeps
heartbeating. The silent node must turn unhealthy and its participant be reassigned.

Heartbeat ages are read on the test's clock (the registry's injected ``clock``): the
silent node goes stale when the test moves time on, and the live one, whose every
heartbeat is awaited at each step, never does, however busy the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from cloud.app import make_app
from cloud.identity import Org, TokenSigner
from cloud.registry import NodeRegistry
from cloud.settings import CloudSettings
from cloud.state import CLOUD
from cloud.store import MemoryStore, Store
from cloud.store_factory import open_store
from tests.integration.redis_server import redis_server
from tests.waiting import FakeClock, until

pytestmark = pytest.mark.slow

ORGS = {"acme": Org("acme", "acme-key", "acme-hybrid")}
SECRET = "node-secret"
HEARTBEAT_S, MISSES = 0.3, 2


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis"])
async def server(request: pytest.FixtureRequest, tmp_path: Path,
                 clock: FakeClock) -> AsyncIterator[TestServer]:
    settings = CloudSettings(node_secret=SECRET, heartbeat_s=HEARTBEAT_S,
                             heartbeat_misses=MISSES)
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "memory":
            store: Store = MemoryStore()
        else:
            store = open_store(await stack.enter_async_context(redis_server(tmp_path)))
        app = make_app(settings, store, ORGS, TokenSigner())
        app[CLOUD].registry._clock = clock  # heartbeat ages on the test's clock
        running = TestServer(app)
        await running.start_server()
        yield running
        await running.close()


async def _node(http: aiohttp.ClientSession, server: TestServer, node_id: str,
                heartbeats: asyncio.Event) -> asyncio.Task[None]:
    """A control-channel client that heartbeats while ``heartbeats`` is set and always
    answers ``allocate_leg``: connected and responsive, but maybe silent."""
    body = {"id": node_id, "kind": "cloud", "region": "test", "address": "192.0.2.7",
            "endpoints": [{"rung": "udp/5004", "transport": "udp", "port": 5004}]}
    async with http.post(server.make_url("/v1/nodes"), json=body,
                         headers={"Authorization": f"Bearer {SECRET}"}) as response:
        assert response.status == 201
        answer = await response.json()
    ws = await http.ws_connect(server.make_url(answer["control_path"]),
                               headers={"Authorization": f"Bearer {SECRET}"})

    async def beat() -> None:
        while True:
            if heartbeats.is_set():
                await ws.send_str(json.dumps({"type": "heartbeat", "load": 0.0, "legs": 0}))
            await asyncio.sleep(HEARTBEAT_S / 3)

    async def serve() -> None:
        beating = asyncio.create_task(beat())
        try:
            async for msg in ws:
                command = json.loads(msg.data)
                if command["type"] == "allocate_leg":
                    await ws.send_str(json.dumps({"type": "leg_allocated",
                                                  "request_id": command["request_id"],
                                                  "leg_id": command["leg_id"]}))
        finally:
            beating.cancel()
            await ws.close()

    return asyncio.create_task(serve())


async def _call(http: aiohttp.ClientSession, server: TestServer, method: str, path: str,
                body: Any, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, server.make_url(path), json=body,
                            headers=headers) as response:
        assert response.status < 300, await response.text()
        return await response.json()


def _healthy(registry: NodeRegistry, node_id: str) -> bool:
    return any(n.id == node_id and n.healthy for n in registry.nodes())


def _heard_now(registry: NodeRegistry, node_id: str) -> bool:
    """The node's last heartbeat was read at the registry clock's current time."""
    return registry.heartbeat_age(node_id) == 0.0


async def test_a_connected_node_that_stops_heartbeating_is_unhealthy_and_drained(
    server: TestServer, clock: FakeClock,
) -> None:
    registry = server.app[CLOUD].registry
    async with aiohttp.ClientSession() as http:
        silent_beats, live_beats = asyncio.Event(), asyncio.Event()
        silent_beats.set()
        live_beats.set()
        silent = await _node(http, server, "n-silent", silent_beats)
        await until(lambda: _healthy(registry, "n-silent"), "n-silent connected")
        alice = await _call(http, server, "POST", "/v1/devices",
                            {"org": "acme", "enrollment_key": "acme-key", "name": "alice"})
        token = alice["token"]
        results = [{"node_id": "n-silent", "rung": "udp/5004", "reachable": True,
                    "rtt_ms": 5.0},
                   {"node_id": "n-live", "rung": "udp/5004", "reachable": True,
                    "rtt_ms": 50.0}]
        await _call(http, server, "PUT", f"/v1/devices/{alice['device_id']}/reachability",
                    {"results": results}, token)
        meeting = await _call(http, server, "POST", "/v1/meetings", {}, token)
        joined = await _call(http, server, "POST",
                             f"/v1/meetings/{meeting['id']}/participants", {}, token)
        assert joined["node"]["id"] == "n-silent"  # the nearer node, while it heartbeats
        events = await http.ws_connect(server.make_url("/v1/events"),
                                       headers={"Authorization": f"Bearer {token}"})
        live = await _node(http, server, "n-live", live_beats)
        await until(lambda: _healthy(registry, "n-live"), "n-live connected")

        silent_beats.clear()  # still connected, still answering: only the heartbeats stop
        # time moves on a tenth of the deadline at a time, each step only once n-live's
        # heartbeat was read at it, until n-silent has missed its heartbeats
        while (registry.heartbeat_age("n-silent") or 0.0) <= HEARTBEAT_S * MISSES:
            clock.advance(HEARTBEAT_S * MISSES / 10)
            await until(lambda: _heard_now(registry, "n-live"), "n-live heartbeats")
        async with asyncio.timeout(10):
            while True:
                event = json.loads((await events.receive()).data)
                if event["type"] == "media.reassigned":
                    break
        assert event["participant_id"] == joined["participant_id"]
        assert event["node_id"] == "n-live"
        assert not silent.done()  # the control channel never closed
        nodes = await _call(http, server, "GET", "/v1/nodes", None, token)
        health = {n["id"]: n["healthy"] for n in nodes["nodes"]}
        assert health.get("n-silent", False) is False and health["n-live"] is True

        await events.close()
        for task in (silent, live):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
