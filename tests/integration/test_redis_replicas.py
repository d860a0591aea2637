"""Two cloud replicas on one real redis-server behave as one cloud.

"two cloud replicas on one Redis — register on one, join on the other,
and an event raised on one reaches a WebSocket client of the other." The node
holds its control channel to replica A; a join on replica B allocates its leg
through Redis (the command is published on the node's channel, A forwards it
and publishes the node's answer back).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from cloud.app import make_app
from cloud.identity import TokenSigner
from cloud.settings import CloudSettings
from cloud.store_factory import open_store
from tests.integration.redis_server import redis_server
from tests.integration.subscriptions import store_of, subscribed
from tests.integration.test_cloud_api import NODE_SECRET, ORGS, Api, _scripted_node

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[tuple[Api, Api]]:
    seed = "11" * 32
    settings = CloudSettings(node_secret=NODE_SECRET, heartbeat_s=1.0, token_key=seed)
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


async def test_register_on_one_join_on_the_other_events_cross(replicas: tuple[Api, Api]) -> None:
    a, b = replicas
    node = await _scripted_node(a, "n1")  # the node's control channel is held by A
    alice = await a.device(name="alice")  # registered on A ...
    bob = await b.device(name="bob")
    async with asyncio.timeout(5):  # ... B learns of A's node through Redis
        while True:
            _, listed = await b.call("GET", "/v1/nodes", token=alice["token"])
            if any(n["id"] == "n1" and n["healthy"] for n in listed["nodes"]):
                break
            await asyncio.sleep(0.1)
    await b.report(alice, "n1")  # tokens and reports work on either replica
    await a.report(bob, "n1")
    _, stored = await a.call("GET", f"/v1/devices/{alice['device_id']}/reachability",
                             token=alice["token"])
    assert stored["report"]["results"][0]["node_id"] == "n1"

    _, meeting = await a.call("POST", "/v1/meetings", {}, alice["token"])
    status, bob_joined = await a.call("POST", f"/v1/meetings/{meeting['id']}/participants",
                                      {}, bob["token"])
    assert status == 201
    ws = await a.http.ws_connect(a.server.make_url("/v1/events"),
                                 headers={"Authorization": f"Bearer {bob['token']}"})
    await subscribed(store_of(a.server.app), bob["device_id"])
    # alice joins on B: the leg is allocated on n1 through A
    status, joined = await b.call("POST", f"/v1/meetings/{meeting['id']}/participants", {},
                                  alice["token"])
    assert status == 201, joined
    assert joined["node"]["id"] == "n1" and joined["ssrc"] != bob_joined["ssrc"]
    # the event raised on B reaches bob's WebSocket on A
    event = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
    assert (event["type"], event["participant_id"]) == ("participant.joined",
                                                         joined["participant_id"])
    _, view = await a.call("GET", f"/v1/meetings/{meeting['id']}", token=bob["token"])
    assert len(view["participants"]) == 2
    await ws.close()
    node.cancel()
