"""A node's id is known before its listeners start, and nothing renames it later.

Defect: a node started without ``--node-id`` built its engine as ``cloud-node``,
registered without an id, and the control channel then set ``engine.node_id``
to the id the cloud chose: the STUN SOFTWARE of answers sent before that named
another node. Now the node picks its id (the cloud's shape) before it builds
the engine and registers under it; a cloud that answers another id is refused.
"""

from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from cloud.app import make_app
from cloud.identity import Org, TokenSigner
from cloud.settings import CloudSettings
from cloud.state import CLOUD
from cloud.store import MemoryStore
from media_node.cascade import cloud_dialler
from media_node.control import ControlChannel, EventOutbox, RegistrationRefused, new_node_id
from media_node.engine import Engine
from media_node.settings import NodeSettings
from wire.models import Endpoint
from wire.transports import RungName, Transport

SECRET = "node-secret"
ENDPOINTS = [Endpoint(rung=RungName.UDP_5004, transport=Transport.UDP, port=5004)]


def _channel(url: str, engine: Engine) -> ControlChannel:
    settings = NodeSettings(cloud=url, node_secret=SECRET, advertise="127.0.0.1")
    return ControlChannel(settings, engine, ENDPOINTS, None, dial=cloud_dialler(),
                          outbox=EventOutbox())


async def test_a_node_registers_under_the_id_its_engine_was_built_with() -> None:
    app = make_app(CloudSettings(node_secret=SECRET), MemoryStore(),
                   {"acme": Org("acme", "k", "h")}, TokenSigner())
    server = TestServer(app)
    await server.start_server()
    try:
        engine = Engine(new_node_id())
        channel = _channel(str(server.make_url("")).rstrip("/"), engine)
        async with aiohttp.ClientSession() as http:
            registered = await channel.register(http)
        assert registered.node_id == engine.node_id == channel.node_id
        assert engine.node_id.startswith("node-")
        assert app[CLOUD].registry.get(engine.node_id) is not None
    finally:
        await server.close()


async def test_a_cloud_that_renames_the_node_is_refused() -> None:
    async def register(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        return web.json_response({"node_id": body["id"] + "-renamed", "heartbeat_s": 1.0,
                                  "control_path": "/v1/nodes/x/control"}, status=201)

    app = web.Application()
    app.router.add_post("/v1/nodes", register)
    server = TestServer(app)
    await server.start_server()
    try:
        channel = _channel(str(server.make_url("")).rstrip("/"), Engine("n1"))
        async with aiohttp.ClientSession() as http:
            with pytest.raises(RegistrationRefused, match="registered this node as n1-renamed"):
                await channel.register(http)
    finally:
        await server.close()
