"""Node failures seen by two cloud replicas on one real redis-server.

Defects pinned down (each test failed before the fix):
- after a node's control WebSocket closed, the replica holding it read the
  node's own announcement back from Redis as a healthy remote node until the
  announcement's TTL ran out (13.5 s with the default settings);
- a second failure of the same node soon after the first was never
  reassigned: the reassignment claim key outlived the failure (61 s with the
  defaults) and the health watch acted only on a healthy-to-unhealthy edge.
Here the announcement TTL is long (heartbeat 1 s × 10 misses) so that a
node's failure is known from its closed channel alone, as a crash is.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from cloud.app import make_app
from cloud.identity import TokenSigner
from cloud.settings import CloudSettings
from cloud.store_factory import open_store
from tests.integration.redis_server import redis_server
from tests.integration.subscriptions import store_of, subscribed
from tests.integration.test_cloud_api import NODE_SECRET, ORGS, Api

pytestmark = [pytest.mark.redis, pytest.mark.slow]


class Node:
    """A control-channel client that heartbeats and allocates every leg it is asked for."""

    def __init__(self, api: Api, node_id: str) -> None:
        self.api, self.node_id = api, node_id
        self.task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        body = {"id": self.node_id, "kind": "cloud", "region": "test", "address": "192.0.2.7",
                "endpoints": [{"rung": "udp/5004", "transport": "udp", "port": 5004}]}
        status, answer = await self.api.call("POST", "/v1/nodes", body, NODE_SECRET)
        assert status == 201, answer
        ws = await self.api.http.ws_connect(self.api.server.make_url(answer["control_path"]),
                                            headers={"Authorization": f"Bearer {NODE_SECRET}"})

        async def beat() -> None:
            while not ws.closed:
                await ws.send_str(json.dumps({"type": "heartbeat", "load": 0.0, "legs": 0}))
                await asyncio.sleep(0.3)

        async def serve() -> None:
            beating = asyncio.create_task(beat())
            try:
                async for msg in ws:
                    command = json.loads(msg.data)
                    if command["type"] == "allocate_leg":
                        await ws.send_str(json.dumps({
                            "type": "leg_allocated", "request_id": command["request_id"],
                            "leg_id": command["leg_id"]}))
            finally:
                beating.cancel()
                await ws.close()

        self.task = asyncio.create_task(serve())

    async def crash(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[tuple[Api, Api]]:
    seed = "22" * 32
    settings = CloudSettings(node_secret=NODE_SECRET, heartbeat_s=1.0, heartbeat_misses=10,
                             token_key=seed)
    async with redis_server(tmp_path) as url:
        servers = []
        for _ in range(2):
            server = TestServer(make_app(settings, open_store(url), ORGS, TokenSigner(seed)))
            await server.start_server()
            servers.append(server)
        async with aiohttp.ClientSession() as http:
            yield Api(servers[0], http), Api(servers[1], http)
        for server in servers:
            await server.close()


async def _healthy(api: Api, token: str) -> set[str]:
    _, listed = await api.call("GET", "/v1/nodes", token=token)
    return {n["id"] for n in listed["nodes"] if n["healthy"]}


async def _until(check: Any, timeout_s: float = 4.0) -> None:
    """Poll ``check()``; the deadline is far below the 10 s announcement TTL."""
    async with asyncio.timeout(timeout_s):
        while not await check():  # noqa: ASYNC110 - polling another process's view
            await asyncio.sleep(0.1)


async def test_a_closed_node_leaves_every_replica_at_once(replicas: tuple[Api, Api]) -> None:
    a, b = replicas
    node = Node(a, "n1")
    await node.connect()
    device = await a.device(name="watcher")
    for api in (a, b):
        await _until(lambda api=api: _has(api, device["token"], "n1"))
    await node.crash()
    for api in (a, b):  # withdrawn by A the moment the channel closed
        await _until(lambda api=api: _lacks(api, device["token"], "n1"))


async def _has(api: Api, token: str, node_id: str) -> bool:
    return node_id in await _healthy(api, token)


async def _lacks(api: Api, token: str, node_id: str) -> bool:
    return node_id not in await _healthy(api, token)


async def test_every_failure_of_a_node_is_reassigned_once(replicas: tuple[Api, Api]) -> None:
    """n1 fails, n2 fails, n1 fails again within seconds: three reassignments, each
    raised by exactly one replica (the participant gets exactly three events)."""
    a, b = replicas
    nodes = {"n1": Node(a, "n1"), "n2": Node(a, "n2")}
    for node in nodes.values():
        await node.connect()
    alice = await b.device(name="alice")
    for api in (a, b):
        await _until(lambda api=api: _has(api, alice["token"], "n2"))
    results = [{"node_id": "n1", "rung": "udp/5004", "reachable": True, "rtt_ms": 10.0},
               {"node_id": "n2", "rung": "udp/5004", "reachable": True, "rtt_ms": 50.0}]
    status, _ = await b.call("PUT", f"/v1/devices/{alice['device_id']}/reachability",
                             {"results": results}, alice["token"])
    assert status == 200
    _, meeting = await b.call("POST", "/v1/meetings", {}, alice["token"])
    status, joined = await b.call("POST", f"/v1/meetings/{meeting['id']}/participants", {},
                                  alice["token"])
    assert status == 201 and joined["node"]["id"] == "n1"
    ws = await b.http.ws_connect(b.server.make_url("/v1/events"),
                                 headers={"Authorization": f"Bearer {alice['token']}"})
    await subscribed(store_of(b.server.app), alice["device_id"])
    moves: list[str] = []
    for victim, to in (("n1", "n2"), ("n2", "n1"), ("n1", "n2")):
        await nodes[victim].crash()
        event = json.loads((await asyncio.wait_for(ws.receive(), 4.0)).data)
        assert (event["type"], event["node_id"]) == ("media.reassigned", to), event
        moves.append(event["node_id"])
        await nodes[victim].connect()  # back at once: its next failure must count again
        await _until(lambda v=victim: _has(a, alice["token"], v))
    assert moves == ["n2", "n1", "n2"]
    with pytest.raises(TimeoutError):  # no replica reassigned anything twice
        await asyncio.wait_for(ws.receive(), 1.5)
    await ws.close()
    for node in nodes.values():
        await node.crash()
