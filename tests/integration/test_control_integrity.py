"""The control channel cannot kill a node (a real ``python -m media_node`` process).

Before the fix one ``open_cascade`` whose SRTP key was bad base64, of the wrong
length, or 30 bytes for the GCM profile (RFC 7714 §12 takes 28) raised from the
engine, the control task ended and the node process exited, losing every leg.
Now the model refuses it, the node answers ``control_refused``, counts it and
keeps relaying. The test is the cloud's end of the control channel here (a
plain aiohttp server speaking the node's contract), so it can send what a real
cloud never would.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from client.media import MediaSession
from lab.net import free_block, free_port
from tests.waiting import HANG_S
from wire.address import Address
from wire.ice_lite import new_password, new_ufrag
from wire.models import (
    AllocateLeg,
    AssignmentReason,
    Endpoint,
    IceCredentials,
    Joined,
    NodeInfo,
    SrtpParams,
)
from wire.srtp import SrtpKeys
from wire.transports import RungName, Transport

pytestmark = pytest.mark.slow

NODE_SECRET = secrets.token_urlsafe(16)


class ControlEnd:
    """The cloud's side of one node's control channel: registration, then the WebSocket."""

    def __init__(self) -> None:
        self.registration: dict[str, Any] = {}
        self.ws: web.WebSocketResponse | None = None
        self.connected = asyncio.Event()
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def register(self, request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == f"Bearer {NODE_SECRET}"
        self.registration = await request.json()
        return web.json_response({"node_id": "node-x", "control_path": "/v1/nodes/node-x/control",
                                  "heartbeat_s": 0.5}, status=201)

    async def control(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws = ws
        self.connected.set()
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                message = json.loads(msg.data)
                if message["type"] not in ("heartbeat", "leg_event"):
                    await self.received.put(message)
        return ws

    async def send(self, message: dict[str, Any] | str) -> None:
        assert self.ws is not None
        await self.ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def answer(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.received.get(), 5)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[ControlEnd, str, asyncio.subprocess.Process]]:
    prefix = free_block()
    end = ControlEnd()
    app = web.Application()
    app.router.add_post("/v1/nodes", end.register)
    app.router.add_get("/v1/nodes/node-x/control", end.control)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port(prefix + ".1")
    await web.TCPSite(runner, prefix + ".1", port).start()
    log = (tmp_path / "node.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "media_node", "--cloud", f"http://{prefix}.1:{port}",
        "--advertise", prefix + ".2", "--node-id", "node-x", "--no-tcp", "--no-tls",
        "--udp-last-resort-port", "0", stdout=log, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PINHOLE_NODE_SECRET": NODE_SECRET})
    log.close()
    try:
        await asyncio.wait_for(end.connected.wait(), 15)
        yield end, prefix + ".2", proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        await runner.cleanup()


def _leg(keys: tuple[str, str], profile: str = "AES_CM_128_HMAC_SHA1_80") -> AllocateLeg:
    ice = IceCredentials(node_ufrag=new_ufrag(), client_ufrag=new_ufrag(),
                         pwd=SecretStr(new_password()))
    return AllocateLeg(request_id="r1", leg_id="leg-1", meeting_id="m1", participant_id="p1",
                       ssrc=1, ice=ice, srtp=SrtpParams(profile=profile,  # type: ignore[arg-type]
                                                        client_to_node=SecretStr(keys[0]),
                                                        node_to_client=SecretStr(keys[1])))


def _keys(command: AllocateLeg) -> SrtpParams:
    """The SDES keys of a Pinhole leg (a WebRTC leg's come from DTLS instead)."""
    assert command.srtp is not None
    return command.srtp


def _malformed_cascade(address: str, profile: str, key: str) -> dict[str, Any]:
    peer = {"id": "peer", "kind": "cloud", "region": "r", "address": address,
            "endpoints": [{"rung": "udp/5004", "transport": "udp", "port": 5004}]}
    return {"type": "open_cascade", "meeting_id": "m1", "peer": peer, "leg_id": "c1",
            "ice": {"node_ufrag": "abcd", "client_ufrag": "efgh", "pwd": "p" * 24},
            "srtp": {"profile": profile, "client_to_node": key, "node_to_client": key}}


async def test_a_malformed_open_cascade_is_refused_and_the_node_keeps_its_legs(
    node: tuple[ControlEnd, str, asyncio.subprocess.Process],
) -> None:
    end, address, proc = node
    keys = (SrtpKeys.generate().to_b64(), SrtpKeys.generate().to_b64())
    allocate = _leg(keys)
    await end.send(allocate.model_dump(mode="json"))
    assert (await end.answer())["ok"] is True
    port = next(e["port"] for e in end.registration["endpoints"] if e["rung"] == "udp/5004")
    joined = Joined(meeting_id="m1", participant_id="p1",
                    node=NodeInfo(id="node-x", kind="cloud", region="r", address=address,
                                  endpoints=[Endpoint(rung=RungName.UDP_5004,
                                                      transport=Transport.UDP, port=port)]),
                    plan=[], ice=allocate.ice, srtp=_keys(allocate), ssrc=1,
                    reason=AssignmentReason(chosen="node-x", rule="test", candidates=[]))
    session = MediaSession(joined)
    await session.connect_udp(Address(address, port), RungName.UDP_5004)
    try:
        gcm_with_30 = base64.b64encode(bytes(30)).decode()
        shapes = [
            _malformed_cascade(address, "AES_CM_128_HMAC_SHA1_80", "%%not base64%%"),
            _malformed_cascade(address, "AES_CM_128_HMAC_SHA1_80",
                               base64.b64encode(bytes(20)).decode()),
            _malformed_cascade(address, "AEAD_AES_128_GCM", gcm_with_30),
        ]
        for shape in shapes:
            await end.send(shape)
            refused = await end.answer()
            assert refused["type"] == "control_refused" and refused["command"] == "open_cascade"
            assert gcm_with_30 not in refused["detail"]  # never quotes a key
        await end.send("{not json")
        assert (await end.answer())["command"] == "unknown"
        # an open_cascade that would replace a participant's leg is refused as well
        taking = _malformed_cascade(address, "AES_CM_128_HMAC_SHA1_80", keys[0])
        taking["leg_id"] = "leg-1"
        await end.send(taking)
        assert (await end.answer())["type"] == "control_refused"
        # it answered every one of them; its leg still answers after them ...
        assert await session.binding(HANG_S) >= 0
        assert proc.returncode is None  # ... and the node is still running
    finally:
        session.close()
