"""The content floor and content legs through the cloud API, in-process over real HTTP,
on both stores (Redis: a real redis-server).

docs/design.md "Content (screen sharing)": one presenter per meeting; request, grant,
take-over (the first presenter is told), release; the floor freed when the presenter
leaves or its leg is freed; events to every participant; a content leg's plan is the
content ladder; a UDP-only device profile is refused, saying why. The media node here
is a scripted control-channel client speaking the real protocol.
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
from cloud.identity import TokenSigner
from cloud.settings import CloudSettings
from cloud.store import MemoryStore, Store
from cloud.store_factory import open_store
from tests.integration.redis_server import redis_server
from tests.integration.test_cloud_api import NODE_SECRET, ORGS, Api

pytestmark = pytest.mark.slow

ENDPOINTS = [{"rung": "udp/5004", "transport": "udp", "port": 5004},
             {"rung": "tcp/5004", "transport": "tcp", "port": 5004},
             {"rung": "tcp/33434", "transport": "tcp", "port": 33434},
             {"rung": "tls/443", "transport": "tls", "port": 8443}]


@pytest.fixture(params=["memory", "redis"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """The API over both store backends (Redis: a real redis-server)."""
    async with contextlib.AsyncExitStack() as stack:
        store: Store = MemoryStore() if request.param == "memory" else open_store(
            await stack.enter_async_context(redis_server(tmp_path)))
        server = TestServer(make_app(CloudSettings(node_secret=NODE_SECRET, heartbeat_s=5),
                                     store, ORGS, TokenSigner()))
        await server.start_server()
        async with aiohttp.ClientSession() as http:
            yield Api(server, http)
        await server.close()


class Node:
    """A scripted node: registers with TCP/TLS endpoints, allocates every leg, keeps the
    commands it got, and can report a leg event."""

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self, api: Api, node_id: str = "n1") -> Node:
        status, answer = await api.call("POST", "/v1/nodes", {
            "id": node_id, "kind": "cloud", "region": "test", "address": "192.0.2.7",
            "endpoints": ENDPOINTS}, NODE_SECRET)
        assert status == 201, answer
        self.ws = ws = await api.http.ws_connect(
            api.server.make_url(answer["control_path"]),
            headers={"Authorization": f"Bearer {NODE_SECRET}"})
        await ws.send_str(json.dumps({"type": "heartbeat", "load": 0.0, "legs": 0}))

        async def serve() -> None:
            async for msg in ws:
                command = json.loads(msg.data)
                self.commands.append(command)
                if command["type"] == "allocate_leg":
                    await ws.send_str(json.dumps({"type": "leg_allocated",
                                                  "request_id": command["request_id"],
                                                  "leg_id": command["leg_id"]}))

        self.task = asyncio.create_task(serve())
        return self

    def leg_of(self, participant: str, *, content: bool = False) -> str:
        return next(str(c["leg_id"]) for c in self.commands if c["type"] == "allocate_leg"
                    and c["participant_id"] == participant and c["content"] == content)

    async def freed(self, leg_id: str) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps({"type": "leg_event", "leg_id": leg_id,
                                           "event": "freed"}))

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


class Party:
    """A device in the meeting with its events WebSocket."""

    def __init__(self, api: Api, device: dict[str, Any], joined: dict[str, Any],
                 ws: aiohttp.ClientWebSocketResponse) -> None:
        self.api, self.device, self.joined, self.ws = api, device, joined, ws

    @property
    def pid(self) -> str:
        return str(self.joined["participant_id"])

    @property
    def token(self) -> str:
        return str(self.device["token"])

    async def floor(self, take_over: bool = False) -> tuple[int, Any]:
        return await self.api.call("POST", f"/v1/meetings/{self.joined['meeting_id']}/floor",
                                   {"participant_id": self.pid, "take_over": take_over},
                                   self.token)

    async def release(self) -> tuple[int, Any]:
        return await self.api.call("DELETE", f"/v1/meetings/{self.joined['meeting_id']}/floor",
                                   None, self.token)

    async def event(self, kind: str) -> dict[str, Any]:
        """The next event of type ``kind`` (others are skipped)."""
        while True:
            message = await asyncio.wait_for(self.ws.receive(), 10)
            event: dict[str, Any] = json.loads(message.data)
            if event["type"] == kind:
                return event


async def _meeting(api: Api, *names: str, profile: str = "desktop",
                   nodes: tuple[str, ...] = ()) -> list[Party]:
    """Devices joined to one new meeting, each listening to its events (each reaching the
    node of ``nodes`` at its place, or n1)."""
    parties = []
    meeting: dict[str, Any] | None = None
    for index, name in enumerate(names):
        device = await api.device(name=name, profile=profile if name == "room" else "desktop")
        await api.report(device, nodes[index] if nodes else "n1")
        if meeting is None:
            meeting = (await api.call("POST", "/v1/meetings", {}, device["token"]))[1]
        assert meeting is not None
        ws = await api.http.ws_connect(api.server.make_url("/v1/events"),
                                       headers={"Authorization": f"Bearer {device['token']}"})
        status, joined = await api.call("POST", f"/v1/meetings/{meeting['id']}/participants",
                                        {}, device["token"])
        assert status == 201, joined
        parties.append(Party(api, device, joined, ws))
    return parties


async def _metric(api: Api, kind: str) -> float:
    async with api.http.get(api.server.make_url("/metrics")) as response:
        text = await response.text()
    line = f'pinhole_floor_changes_total{{kind="{kind}"}} '
    return next((float(x.removeprefix(line)) for x in text.splitlines() if x.startswith(line)),
                0.0)


async def test_grant_refusal_take_over_and_release_are_told_to_everyone(api: Api) -> None:
    node = await Node().start(api)
    a, b = await _meeting(api, "a", "b")
    status, floor = await a.floor()
    assert status == 200 and floor["presenter"] == a.pid and floor["change"] == "granted"
    for party in (a, b):
        assert (await party.event("floor.granted"))["participant_id"] == a.pid
    status, body = await b.floor()
    assert status == 409 and body["error"] == "floor_held" and a.pid in body["detail"]
    status, floor = await b.floor(take_over=True)
    assert status == 200 and (floor["change"], floor["previous"]) == ("taken_over", a.pid)
    told = await a.event("floor.taken_over")  # the first presenter is told
    assert (told["participant_id"], told["previous_participant_id"]) == (b.pid, a.pid)
    _, view = await api.call("GET", f"/v1/meetings/{a.joined['meeting_id']}", token=a.token)
    assert view["presenter"] == b.pid
    status, body = await a.release()
    assert status == 409 and body["error"] == "not_presenter"
    status, floor = await b.release()
    assert status == 200 and floor["presenter"] is None and floor["change"] == "released"
    assert (await a.event("floor.released"))["participant_id"] == b.pid
    assert [await _metric(api, k) for k in ("granted", "taken_over", "released")] == [1, 1, 1]
    node.stop()


async def test_two_presenters_racing_get_exactly_one_floor(api: Api) -> None:
    node = await Node().start(api)
    for _ in range(5):
        a, b = await _meeting(api, "a", "b")
        answers = await asyncio.gather(a.floor(), b.floor())
        assert sorted(status for status, _ in answers) == [200, 409]
        winner = next(body["presenter"] for status, body in answers if status == 200)
        loser = next(body for status, body in answers if status == 409)
        assert loser["error"] == "floor_held" and winner in loser["detail"]
    node.stop()


async def test_the_presenter_leaving_frees_the_floor_and_it_is_announced(api: Api) -> None:
    node = await Node().start(api)
    a, b = await _meeting(api, "a", "b")
    assert (await a.floor())[0] == 200
    status, _ = await api.call(
        "DELETE", f"/v1/meetings/{a.joined['meeting_id']}/participants/{a.pid}", None, a.token)
    assert status == 204
    assert (await b.event("floor.freed"))["participant_id"] == a.pid
    _, view = await api.call("GET", f"/v1/meetings/{b.joined['meeting_id']}", token=b.token)
    assert view["presenter"] is None
    assert await _metric(api, "freed") == 1
    assert (await b.floor())[0] == 200  # free for the next presenter
    node.stop()


async def test_a_presenter_whose_leg_the_node_freed_frees_the_floor(api: Api) -> None:
    """No consent for the leg timeout: the node frees the leg, the cloud removes the
    participant (a client that crashed never says so), and with it its floor."""
    node = await Node().start(api)
    a, b = await _meeting(api, "a", "b")
    assert (await a.floor())[0] == 200
    await node.freed(node.leg_of(a.pid))
    assert (await b.event("floor.freed"))["participant_id"] == a.pid


async def test_a_content_leg_races_the_content_ladder_and_is_a_content_leg_on_the_node(
        api: Api) -> None:
    node = await Node().start(api)
    a, b = await _meeting(api, "a", "b")
    path = f"/v1/meetings/{a.joined['meeting_id']}/participants/{a.pid}/content"
    status, leg = await api.call("POST", path, None, a.token)
    assert status == 201, leg
    assert [e["rung"] for e in leg["plan"]] == ["tcp/5004", "tcp/33434", "tls/443",
                                                "http-proxy"]
    assert leg["plan"][-1]["port"] == 8443  # the proxy's tunnel ends on the node's TLS port
    assert leg["node"]["id"] == "n1" and leg["ssrc"] != a.joined["ssrc"]
    assert leg["srtp"]["client_to_node"] != a.joined["srtp"]["client_to_node"]
    command = next(c for c in node.commands if c.get("leg_id") == node.leg_of(a.pid,
                                                                              content=True))
    assert command["content"] is True and command["ssrc"] == leg["ssrc"]
    assert (await api.call("POST", path, None, b.token))[0] == 404  # not b's participant
    # a second content leg replaces the first, which the node is told to free
    first = node.leg_of(a.pid, content=True)
    assert (await api.call("POST", path, None, a.token))[0] == 201

    async def released() -> bool:
        return any(c["type"] == "release_leg" and c["leg_id"] == first for c in node.commands)

    for _ in range(100):
        if await released():
            break
        await asyncio.sleep(0.05)
    assert await released()
    node.stop()


async def test_a_udp_only_device_cannot_present_or_receive_and_is_told_why(api: Api) -> None:
    """FNR limitations: "Cisco Spark Room System media does not work if UDP traffic to both
    port 5004 and port 33434 is blocked": rooms use UDP only, content needs TCP."""
    node = await Node().start(api)
    _a, room = await _meeting(api, "a", "room", profile="room")
    status, body = await room.floor()
    assert status == 403 and body["error"] == "content_unsupported"
    assert "room devices cannot present or receive shared content" in body["detail"]
    path = f"/v1/meetings/{room.joined['meeting_id']}/participants/{room.pid}/content"
    status, body = await api.call("POST", path, None, room.token)
    assert status == 403 and body["error"] == "content_unsupported"
    node.stop()


async def _told(node: Node, what: str, check: Any) -> dict[str, Any]:
    """The first command the node got for which ``check`` holds (the node reads its
    channel in a task of its own)."""
    for _ in range(200):
        found = next((c for c in node.commands if check(c)), None)
        if found is not None:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"the node was never told {what}; it got {node.commands}")


async def test_the_node_is_told_who_presents_on_every_change_and_before_a_content_leg(
        api: Api) -> None:
    """The node enforces the floor (docs/design.md "Content"): the cloud says who holds it
    (``set_floor``) on every change, and again just before it allocates a content leg, so
    a node that has just got its first content leg of the meeting knows the floor."""
    node = await Node().start(api)
    a, b = await _meeting(api, "a", "b")

    def floor_is(presenter: str | None) -> Any:
        return lambda c: c["type"] == "set_floor" and c["presenter"] == presenter

    assert (await a.floor())[0] == 200
    assert (await _told(node, "a presents", floor_is(a.pid)))["meeting_id"] == \
        a.joined["meeting_id"]
    assert (await b.floor(take_over=True))[0] == 200
    await _told(node, "b took the floor over", floor_is(b.pid))
    assert (await b.release())[0] == 200
    await _told(node, "the floor is free", floor_is(None))
    path = f"/v1/meetings/{a.joined['meeting_id']}/participants/{a.pid}/content"
    count = len(node.commands)
    assert (await api.call("POST", path, None, a.token))[0] == 201
    new = node.commands[count:]
    kinds = [(c["type"], c.get("content")) for c in new]
    assert kinds[:2] == [("set_floor", None), ("allocate_leg", True)], kinds
    node.stop()


async def test_content_legs_on_two_nodes_get_a_content_cascade(api: Api) -> None:
    """docs/design.md "Content": two nodes that both carry a content leg of the meeting are
    joined by a content cascade (``content: true`` on both ends) beside the audio/video
    one; it closes when one of them no longer carries content."""
    n1, n2 = await Node().start(api, "n1"), await Node().start(api, "n2")
    a, b = await _meeting(api, "a", "b", nodes=("n1", "n2"))
    meeting = a.joined["meeting_id"]
    for party in (a, b):
        path = f"/v1/meetings/{meeting}/participants/{party.pid}/content"
        assert (await api.call("POST", path, None, party.token))[0] == 201
    # both cloud nodes: the node new to the meeting (b's, n2) dials the other
    allocated = await _told(n1, "a content cascade leg",
                            lambda c: c["type"] == "allocate_leg" and c["cascade"]
                            and c["content"])
    opened = await _told(n2, "to open the content cascade",
                         lambda c: c["type"] == "open_cascade" and c["content"])
    assert opened["leg_id"] == allocated["leg_id"] and opened["peer"]["id"] == "n1"
    _, view = await api.call("GET", f"/v1/meetings/{meeting}", token=a.token)
    assert sorted((c["from_node"], c["to_node"], c["content"]) for c in view["cascades"]) == [
        ("n2", "n1", False), ("n2", "n1", True)]
    status, _ = await api.call("DELETE", f"/v1/meetings/{meeting}/participants/{b.pid}",
                               None, b.token)
    assert status == 204
    await _told(n2, "to close the content cascade",
                lambda c: c["type"] == "close_cascade" and c["leg_id"] == allocated["leg_id"])
    _, view = await api.call("GET", f"/v1/meetings/{meeting}", token=a.token)
    assert view["cascades"] == []
    n1.stop()
    n2.stop()


async def test_a_presenter_whose_leg_lost_consent_frees_the_floor(api: Api) -> None:
    """A presenter killed stops answering consent checks (RFC 7675 §5.1): at the node's
    ``consent_expired`` the floor is freed and announced, long before the leg timeout
    removes the participant; another participant's lost consent changes nothing."""
    node = await Node().start(api)
    a, b = await _meeting(api, "a", "b")
    assert (await a.floor())[0] == 200
    assert node.ws is not None
    await node.ws.send_str(json.dumps({"type": "leg_event", "leg_id": node.leg_of(b.pid),
                                       "event": "consent_expired", "rung": "udp/5004"}))
    await node.ws.send_str(json.dumps({"type": "leg_event", "leg_id": node.leg_of(a.pid),
                                       "event": "consent_expired", "rung": "udp/5004"}))
    assert (await b.event("floor.freed"))["participant_id"] == a.pid
    _, view = await api.call("GET", f"/v1/meetings/{a.joined['meeting_id']}", token=a.token)
    assert view["presenter"] is None
    assert a.pid in {p["id"] for p in view["participants"]}  # still in: not left
    assert await _metric(api, "freed") == 1
    node.stop()
