"""Bounded retention: end-of-call reports are summed then forgotten; ended meetings go.

Defects pinned down (before: "POST /v1/metrics/calls keeps ~1.35 KB per call
forever; meetings and their ids are kept after they end"): the store keeps at
most ``max_recent_calls`` reports and none older than the retention, while
the per-org, per-transport totals keep counting; a meeting empty for the
meeting retention is deleted with its id and its lock, and counted. Both
store backends (Redis: a real redis-server); a fake clock where the backend
takes one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from cloud.app import make_app
from cloud.identity import Org, TokenSigner
from cloud.retention import forget_ended_meetings
from cloud.settings import CloudSettings
from cloud.state import CLOUD
from cloud.store import (
    CallTotals,
    MeetingRecord,
    MemoryStore,
    ParticipantRecord,
    Retention,
    Store,
)
from cloud.store_factory import open_store
from tests.integration.redis_server import redis_server
from tests.integration.test_cloud_api import Api, _scripted_node
from tests.waiting import FakeClock, until_async
from wire.models import CallMetrics

pytestmark = pytest.mark.redis

BOUND = Retention(max_recent_calls=50, calls_s=600.0)


def _call(i: int, transport: str = "udp/5004") -> CallMetrics:
    return CallMetrics.model_validate({
        "meeting_id": f"m{i}", "participant_id": f"p{i}", "transport": transport,
        "duration_s": 2.0, "packets_sent": 10, "packets_received": 9, "loss": 0.5,
        "jitter_ms": 1.0, "rtt_ms": 20.0 if i % 2 else None})



@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore(retention=BOUND)
        return
    async with redis_server(tmp_path) as url:
        backend = open_store(url, BOUND)
        yield backend
        await backend.close()


async def test_call_reports_are_summed_and_bounded(store: Store) -> None:
    for i in range(1000):
        await store.add_call_metrics("acme", _call(i))
    await store.add_call_metrics("globex", _call(0, "tls/443"))
    recent = await store.call_metrics()
    assert len(recent) == BOUND.max_recent_calls  # not 1001
    assert recent[-1] == _call(0, "tls/443") and recent[0] == _call(951)  # the newest, in order
    totals = await store.call_totals()
    assert totals[("acme", "udp/5004")] == CallTotals(
        calls=1000, duration_s=2000.0, loss=500.0, jitter_ms=1000.0, rtt_ms=10_000.0,
        rtt_calls=500)
    assert totals[("globex", "tls/443")].calls == 1


async def test_call_reports_older_than_the_retention_are_forgotten() -> None:
    clock = FakeClock(1_000_000.0)
    store = MemoryStore(clock, BOUND)
    await store.add_call_metrics("acme", _call(1))
    clock.now += BOUND.calls_s / 2
    await store.add_call_metrics("acme", _call(2))
    clock.now += BOUND.calls_s / 2 + 1
    assert await store.call_metrics() == [_call(2)]
    clock.now += BOUND.calls_s
    assert await store.call_metrics() == []
    assert (await store.call_totals())[("acme", "udp/5004")].calls == 2  # totals stay


@contextlib.asynccontextmanager
async def api(store: Store) -> AsyncIterator[tuple[TestServer, aiohttp.ClientSession]]:
    settings = CloudSettings(meeting_retention_s=3600, node_secret="node-secret")
    server = TestServer(make_app(settings, store, {
        "acme": Org("acme", "acme-key", ""), "globex": Org("globex", "globex-key", "")},
        TokenSigner()))
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield server, http
    await server.close()


async def _token(server: TestServer, http: aiohttp.ClientSession, org: str) -> str:
    async with http.post(server.make_url("/v1/devices"), json={
            "org": org, "enrollment_key": f"{org}-key", "name": "d"}) as response:
        return str((await response.json())["token"])


async def test_ended_meetings_and_their_ids_are_forgotten(store: Store) -> None:
    async with api(store) as (server, http):
        cloud = server.app[CLOUD]
        acme = await _token(server, http, "acme")
        async with http.post(server.make_url("/v1/meetings"), json={"id": "standup"},
                             headers={"Authorization": f"Bearer {acme}"}) as response:
            created = (await response.json())
        busy = MeetingRecord("busy", "acme", "", created_at=0.0, participants=(
            ParticipantRecord("p1", "d1", "n1", 1, "leg-1"),))
        ended = MeetingRecord("ended", "acme", "", created_at=0.0, ended_at=cloud.clock())
        for meeting in (busy, ended):
            await store.put_meeting(meeting)
        async with cloud.store.meeting_lock("ended"):
            pass
        now = cloud.clock()
        assert await forget_ended_meetings(cloud, now + 3599) == 0
        assert await forget_ended_meetings(cloud, now + 3601) == 2  # "standup" and "ended"
        assert [m.id for m in await store.list_meetings()] == ["busy"]
        assert cloud.metrics.meetings_forgotten == 2
        if isinstance(store, MemoryStore):
            assert "ended" not in store._locks  # the lock goes with the id
        async with http.get(server.make_url(f"/v1/meetings/{created['id']}"),
                            headers={"Authorization": f"Bearer {acme}"}) as response:
            assert response.status == 404
        globex = await _token(server, http, "globex")  # the id is free again
        async with http.post(server.make_url("/v1/meetings"), json={"id": "standup"},
                             headers={"Authorization": f"Bearer {globex}"}) as response:
            assert response.status == 201
        async with http.get(server.make_url("/metrics")) as response:
            assert "pinhole_meetings_forgotten_total 2" in await response.text()


async def test_the_last_leave_stamps_the_end_and_starts_the_retention() -> None:
    """The leave route stamps ``ended_at``: retention runs from the end, not the start."""
    store = MemoryStore()
    async with api(store) as (server, http):
        client = Api(server, http)
        node = await _scripted_node(client, "n1")
        alice = await client.device(name="alice")
        await client.report(alice, "n1")
        _, meeting = await client.call("POST", "/v1/meetings", {}, alice["token"])
        mpath = f"/v1/meetings/{meeting['id']}"
        _, joined = await client.call("POST", mpath + "/participants", {}, alice["token"])
        stored = await store.get_meeting(meeting["id"])
        assert stored is not None and stored.idle_since() is None  # someone is in it
        status, _ = await client.call(
            "DELETE", f"{mpath}/participants/{joined['participant_id']}", token=alice["token"])
        assert status == 204
        stored = await store.get_meeting(meeting["id"])
        assert stored is not None and stored.ended_at is not None
        assert stored.idle_since() == stored.ended_at >= stored.created_at
        cloud = server.app[CLOUD]
        assert await forget_ended_meetings(cloud, stored.ended_at + 3599) == 0
        assert await forget_ended_meetings(cloud, stored.ended_at + 3600) == 1
        node.cancel()


async def test_a_participant_whose_leg_the_node_freed_has_left() -> None:
    """A client that crashed never leaves; its node frees the leg after the leg timeout
    (no consent) and says so: the cloud drops the participant, so the meeting ends and
    is forgotten in its turn (before, it stayed in the meeting for good)."""
    store = MemoryStore()
    async with api(store) as (server, http):
        client = Api(server, http)
        body = {"id": "n1", "kind": "cloud", "region": "test", "address": "192.0.2.7",
                "endpoints": [{"rung": "udp/5004", "transport": "udp", "port": 5004}]}
        status, answer = await client.call("POST", "/v1/nodes", body, "node-secret")
        assert status == 201, answer
        ws = await http.ws_connect(server.make_url(answer["control_path"]),
                                   headers={"Authorization": "Bearer node-secret"})
        await ws.send_str(json.dumps({"type": "heartbeat", "load": 0.0, "legs": 0}))
        legs: list[str] = []

        async def serve() -> None:
            async for msg in ws:
                command = json.loads(msg.data)
                if command["type"] == "allocate_leg":
                    legs.append(command["leg_id"])
                    await ws.send_str(json.dumps({"type": "leg_allocated",
                                                  "request_id": command["request_id"],
                                                  "leg_id": command["leg_id"]}))

        node = asyncio.create_task(serve())
        alice = await client.device(name="alice")
        await client.report(alice, "n1")
        _, meeting = await client.call("POST", "/v1/meetings", {}, alice["token"])
        status, _ = await client.call("POST", f"/v1/meetings/{meeting['id']}/participants", {},
                                      alice["token"])
        assert status == 201 and len(legs) == 1
        await ws.send_str(json.dumps({"type": "leg_event", "leg_id": legs[0],
                                      "event": "freed"}))
        async def emptied() -> bool:
            found = await store.get_meeting(meeting["id"])
            return found is not None and not found.participants

        await until_async(emptied, "the freed leg's participant left the meeting")
        stored = await store.get_meeting(meeting["id"])
        assert stored is not None and stored.participants == ()
        assert stored.ended_at is not None
        assert legs[0] not in server.app[CLOUD].legs
        node.cancel()
        await ws.close()
