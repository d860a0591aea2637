"""A node leaves a hung cloud by its control channel's ping deadline, then registers again.

"control channels with ping/pong deadlines (a hung node or a hung cloud is
detected in ≤ 2 s)". This cloud registers the node and accepts its control WebSocket,
then answers no ping (``autoping=False``), as a SIGSTOPped replica would not. The
node's channel (the ``websockets`` client: ping every 2 × heartbeat, pong due within
one heartbeat) must give up and connect again. (The defect, a 5 s default heartbeat,
is pinned by tests/unit/test_liveness_budget.py; this pins the node's side of the
deadline with the new default.)
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from media_node.cascade import cloud_dialler
from media_node.control import ControlChannel, EventOutbox
from media_node.engine import Engine
from media_node.settings import NodeSettings
from wire.models import Endpoint
from wire.transports import RungName, Transport

pytestmark = pytest.mark.slow
HEARTBEAT_S = 0.5


async def test_the_node_leaves_a_cloud_that_answers_no_ping() -> None:
    controls: list[float] = []

    async def register(request: web.Request) -> web.Response:
        return web.json_response({"node_id": "n1", "control_path": "/v1/nodes/n1/control",
                                  "heartbeat_s": HEARTBEAT_S}, status=201)

    async def control(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        controls.append(asyncio.get_running_loop().time())
        async for _ in ws:  # heartbeats arrive; pings go unanswered
            pass
        return ws

    app = web.Application()
    app.router.add_post("/v1/nodes", register)
    app.router.add_get("/v1/nodes/n1/control", control)
    server = TestServer(app)
    await server.start_server()
    settings = NodeSettings(cloud=str(server.make_url("")).rstrip("/"), node_secret="s",
                            node_id="n1", advertise="127.0.0.1")
    outbox = EventOutbox()
    channel = ControlChannel(settings, Engine("n1", emit=outbox.put),
                             [Endpoint(rung=RungName.UDP_5004, transport=Transport.UDP,
                                       port=5004)], None,
                             dial=cloud_dialler(), outbox=outbox)
    task = asyncio.create_task(channel.run_forever())
    try:
        async with asyncio.timeout(10):
            while len(controls) < 2:  # noqa: ASYNC110 - the fake cloud's own record
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.close()
    # the first channel ended by the ping deadline (ping at 1 s, pong due 0.5 s later,
    # close 0.5 s), then a jittered backoff of 0.25-0.75 s: a new channel within ~3 s
    assert controls[1] - controls[0] < 4.0
