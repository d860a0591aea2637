"""The cloud's side of ``control_refused`` (a node that refuses a command keeps running).

A node answers an ``allocate_leg`` it cannot take with ``control_refused``
carrying the request id: the join fails at once with the node's reason
(instead of waiting out the allocation timeout), and ``/metrics`` counts it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from cloud.app import make_app
from cloud.identity import TokenSigner
from cloud.settings import CloudSettings
from cloud.store import MemoryStore
from tests.integration.test_cloud_api import NODE_SECRET, ORGS, Api


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    settings = CloudSettings(node_secret=NODE_SECRET, heartbeat_s=5, allocate_timeout_s=20.0)
    server = TestServer(make_app(settings, MemoryStore(), ORGS, TokenSigner()))
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield Api(server, http)
    await server.close()


async def test_a_refused_allocation_fails_the_join_at_once_and_is_counted(api: Api) -> None:
    body = {"id": "n1", "kind": "cloud", "region": "test", "address": "192.0.2.7",
            "endpoints": [{"rung": "udp/5004", "transport": "udp", "port": 5004}]}
    status, answer = await api.call("POST", "/v1/nodes", body, NODE_SECRET)
    assert status == 201, answer
    ws = await api.http.ws_connect(api.server.make_url(answer["control_path"]),
                                   headers={"Authorization": f"Bearer {NODE_SECRET}"})
    await ws.send_str(json.dumps({"type": "heartbeat", "load": 0.0, "legs": 0}))
    alice = await api.device(name="alice")
    await api.report(alice, "n1")
    _, meeting = await api.call("POST", "/v1/meetings", {}, alice["token"])

    async def refuse() -> None:
        msg = await ws.receive()
        command = json.loads(msg.data)
        assert command["type"] == "allocate_leg"
        await ws.send_str(json.dumps({"type": "control_refused", "command": "allocate_leg",
                                      "request_id": command["request_id"],
                                      "detail": "srtp.client_to_node: bad key"}))

    node = asyncio.create_task(refuse())
    status, joined = await api.call("POST", f"/v1/meetings/{meeting['id']}/participants", {},
                                    alice["token"])
    await node
    # the node's reason, not "did not allocate the leg in time" after the allocation timeout
    assert status == 503 and "bad key" in joined["detail"]
    async with api.http.get(api.server.make_url("/metrics")) as response:
        text = await response.text()
    assert re.search(r"^pinhole_node_refused_commands 1(\.0)?$", text, re.M)
    await ws.close()
