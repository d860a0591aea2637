"""``POST /v1/meetings/{id}/participants/{pid}/reassign``: a device whose leg went silent.

"a client that asks for reassignment itself when its leg goes silent while
the meeting is live (no media and no answer to consent checks for ~1.5 s)". The cloud
may still think the node healthy (a broken path, a node hung for less than its
deadline): the device's word moves it, once, and only away from the node it names.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from cloud.app import make_app
from cloud.identity import TokenSigner
from cloud.settings import CloudSettings
from cloud.state import CLOUD
from cloud.store import MemoryStore
from tests.integration.subscriptions import subscribed
from tests.integration.test_cloud_api import NODE_SECRET, ORGS, Api
from tests.integration.test_replica_faults import Node

pytestmark = pytest.mark.slow


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    settings = CloudSettings(node_secret=NODE_SECRET)
    server = TestServer(make_app(settings, MemoryStore(), ORGS, TokenSigner()))
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield Api(server, http)
    await server.close()


async def test_a_silent_leg_is_moved_once_away_from_the_named_node(api: Api) -> None:
    nodes = [Node(api, "n1"), Node(api, "n2")]
    for node in nodes:
        await node.connect()
    alice, mallory = await api.device(name="alice"), await api.device(name="mallory")
    results = [{"node_id": "n1", "rung": "udp/5004", "reachable": True, "rtt_ms": 10.0},
               {"node_id": "n2", "rung": "udp/5004", "reachable": True, "rtt_ms": 50.0}]
    for device in (alice, mallory):
        status, _ = await api.call("PUT", f"/v1/devices/{device['device_id']}/reachability",
                                   {"results": results}, device["token"])
        assert status == 200
    _, meeting = await api.call("POST", "/v1/meetings", {}, alice["token"])
    base = f"/v1/meetings/{meeting['id']}/participants"
    _, joined = await api.call("POST", base, {}, alice["token"])
    assert joined["node"]["id"] == "n1"
    ws = await api.http.ws_connect(api.server.make_url("/v1/events"),
                                   headers={"Authorization": f"Bearer {alice['token']}"})
    await subscribed(api.server.app[CLOUD].store, alice["device_id"])
    path = f"{base}/{joined['participant_id']}/reassign"

    status, body = await api.call("POST", path, {"node_id": "n1"}, mallory["token"])
    assert (status, body["error"]) == (404, "not_found")  # another device's participant
    status, body = await api.call("POST", path, {"node": "n1"}, alice["token"])
    assert status == 400  # a malformed body is a clear 4xx

    status, moved = await api.call("POST", path, {"node_id": "n1"}, alice["token"])
    assert status == 200, moved
    assert moved["node"]["id"] == "n2"
    assert (moved["participant_id"], moved["ssrc"]) == (joined["participant_id"],
                                                        joined["ssrc"])
    assert moved["ice"]["node_ufrag"] != joined["ice"]["node_ufrag"]  # a new leg
    event = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
    assert (event["type"], event["node_id"]) == ("media.reassigned", "n2")
    assert event["assignment"]["ice"]["node_ufrag"] == moved["ice"]["node_ufrag"]

    # asked again about n1 (a late retry): already moved, nothing changes
    status, body = await api.call("POST", path, {"node_id": "n1"}, alice["token"])
    assert (status, body["error"]) == (409, "conflict")
    _, view = await api.call("GET", f"/v1/meetings/{meeting['id']}", token=alice["token"])
    assert [p["node_id"] for p in view["participants"]] == ["n2"]
    await ws.close()
    for node in nodes:
        await node.crash()
