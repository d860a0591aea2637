"""The console's event history and a down node, from real actions on a loopback stack.

Defects pinned down: the console had no event history (joins, leaves, failovers with
their gap, overflows, consent losses, refusals); and a node that failed kept showing its
legs and load after failover, with nothing saying that it was down or where its legs went.
With several replicas the history is one bounded Redis list: any replica's console shows
what every replica recorded (docs/design.md, "Operator console").
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from client.api import ApiError
from client.device import Device
from cloud.history import HISTORY_KEY, HistoryEvent, RedisHistory
from lab.pki import ORG
from lab.stack import HYBRID, NodeSpec, Stack, running_stack
from tests.integration.redis_server import redis_server
from wire.models import ProbeResult, ReachabilityReport
from wire.tls import client_context
from wire.transports import RungName

pytestmark = pytest.mark.slow

NODE_A, NODE_B = NodeSpec("node-a", "eu", 0), NodeSpec("node-b", "us", 0)
# consent expires 1 s after the last check, the leg is freed after 3 s (RFC 7675 §5.1 is 30)
NODE_C = NodeSpec("node-c", "ap", 0, extra_args=("--consent-s", "1", "--leg-timeout-s", "3"))
SMALL_HYBRID = replace(HYBRID, extra_args=("--capacity", "1"))
HEARTBEAT = ["--heartbeat-s", "0.5", "--heartbeat-misses", "2"]


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack([NODE_A, NODE_B, NODE_C, SMALL_HYBRID], state_dir=tmp_path,
                             cloud_args=HEARTBEAT) as running:
        yield running


async def _console(stack: Stack, path: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token or stack.operator_token}"} if token != "" else {}
    async with aiohttp.ClientSession() as http, http.get(
            stack.cloud_url + path, ssl=client_context(stack.ca_file),
            headers=headers) as response:
        return response.status, json.loads(await response.text())


async def _until(stack: Stack, what: str, check: Callable[[dict[str, Any]], bool],
                 timeout_s: float = 20.0) -> dict[str, Any]:
    """The console's state once ``check`` holds (polled; the verdict is ``check``)."""
    state: dict[str, Any] = {}
    async with asyncio.timeout(timeout_s):
        while True:
            status, state = await _console(stack, "/v1/console/state")
            assert status == 200
            if check(state):
                return state
            await asyncio.sleep(0.2)
    raise AssertionError(what)  # pragma: no cover


def _kinds(state: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in state["history"]]


async def _device(stack: Stack, name: str, reach: dict[str, float]) -> Device:
    """A device whose report reaches exactly ``reach`` (node → RTT ms) on udp/5004."""
    device = Device(stack.api())
    await device.register(ORG, stack.enrollment_key, name)
    nodes = [NODE_A.id, NODE_B.id, NODE_C.id, HYBRID.id]
    await device.api.put_reachability(ReachabilityReport(results=[
        ProbeResult(node_id=n, rung=RungName.UDP_5004, reachable=n in reach, rtt_ms=reach.get(n))
        for n in nodes]))
    return device


async def _close(device: Device) -> None:
    await device.close()
    await device.api.close()


async def test_every_kind_of_event_is_recorded_newest_first(stack: Stack) -> None:
    devices: list[Device] = []
    try:
        # refused: no node this device reached
        nowhere = await _device(stack, "nowhere", {})
        devices.append(nowhere)
        meeting = (await nowhere.api.create_meeting(title="history")).id
        with pytest.raises(ApiError) as refused:
            await nowhere.join(meeting)
        assert refused.value.status == 503
        # joined, then overflow: the hybrid node takes one leg, the second join overflows
        alice, bob = [await _device(stack, n, {HYBRID.id: 1.0, NODE_A.id: 5.0})
                      for n in ("alice", "bob")]
        devices += [alice, bob]
        a = await alice.join(meeting)
        b = await bob.join(meeting)
        assert (a.node.id, b.node.id, b.reason.rule) == (HYBRID.id, NODE_A.id,
                                                         "hybrid-overflow")
        await alice.api.leave(meeting, a.participant_id)  # left
        # consent lost: a leg that latched and never checks consent again; then freed (left)
        carol = await _device(stack, "carol", {NODE_C.id: 1.0})
        devices.append(carol)
        c = await carol.join(meeting)
        session = await carol.connect(c)
        try:
            await _until(stack, "consent lost, then the leg freed", lambda s: any(
                e["kind"] == "left" and e["node"] == NODE_C.id for e in s["history"]))
        finally:
            session.close()
        # failover: node-a dies with dave (and bob) on it
        dave = await _device(stack, "dave", {NODE_A.id: 5.0, NODE_B.id: 50.0})
        devices.append(dave)
        d = await dave.join(meeting)
        assert d.node.id == NODE_A.id
        await stack.kill(NODE_A.id)
        state = await _until(stack, "dave moved off node-a", lambda s: any(
            e["kind"] == "failover" and e["participant"] == d.participant_id
            for e in s["history"]))
    finally:
        for device in devices:
            await _close(device)
    history = state["history"]
    assert {"refused", "joined", "overflow", "left", "consent_lost", "failover",
            "node_down"} <= set(_kinds(state))
    assert [e["at"] for e in history] == sorted((e["at"] for e in history), reverse=True)
    by_kind = {e["kind"]: e for e in reversed(history)}  # the newest of each kind
    assert by_kind["refused"]["device"] == "nowhere" and "no media node" in \
        by_kind["refused"]["text"]
    assert (by_kind["overflow"]["node"], by_kind["overflow"]["to_node"]) == (HYBRID.id,
                                                                              NODE_A.id)
    assert by_kind["consent_lost"]["participant"] == c.participant_id
    moved = next(e for e in history if e["kind"] == "failover"
                 and e["participant"] == d.participant_id)
    assert (moved["node"], moved["to_node"], moved["device"]) == (NODE_A.id, NODE_B.id, "dave")
    assert moved["gap_s"] is not None and moved["gap_s"] >= 0
    joins = [e for e in history if e["kind"] == "joined"]
    assert [e["device"] for e in joins] == ["dave", "carol", "bob", "alice"]  # newest first
    # the same list from the history route
    status, body = await _console(stack, "/v1/console/history")
    assert status == 200 and body["events"][:len(history)] == history[:len(body["events"])]
    status, _ = await _console(stack, "/v1/console/history", token="")
    assert status == 401


async def test_a_down_node_shows_no_legs_and_where_they_went(stack: Stack) -> None:
    """Before: node-a, killed, still showed its last heartbeat's legs and load."""
    dave = await _device(stack, "dave", {NODE_A.id: 5.0, NODE_B.id: 50.0})
    erin = await _device(stack, "erin", {NODE_A.id: 5.0, NODE_B.id: 50.0})
    try:
        meeting = (await dave.api.create_meeting()).id
        joined = [await d.join(meeting) for d in (dave, erin)]
        assert {j.node.id for j in joined} == {NODE_A.id}
        await _until(stack, "node-a counts the legs", lambda s: next(
            n for n in s["nodes"] if n["id"] == NODE_A.id)["legs"] == 2)
        await stack.kill(NODE_A.id)

        def moved_both(state: dict[str, Any]) -> bool:
            node = next(n for n in state["nodes"] if n["id"] == NODE_A.id)
            return node["status"] == "down" and len(node["moved"]) == 2

        state = await _until(stack, "node-a down, both legs moved", moved_both)
        node = next(n for n in state["nodes"] if n["id"] == NODE_A.id)
        assert node["legs"] is None and node["load"] is None and not node["healthy"]
        assert sorted((m["device"], m["to"]) for m in node["moved"]) == [
            ("dave", NODE_B.id), ("erin", NODE_B.id)]
        [shown] = [m for m in state["meetings"] if m["id"] == meeting]
        assert {p["node"] for p in shown["participants"]} == {NODE_B.id}
        await stack.restart_node(NODE_A.id)  # back: up, nothing listed as moved any more
        state = await _until(stack, "node-a up again", lambda s: next(
            n for n in s["nodes"] if n["id"] == NODE_A.id)["status"] == "up")
        node = next(n for n in state["nodes"] if n["id"] == NODE_A.id)
        assert node["moved"] == [] and "node_up" in _kinds(state)
    finally:
        await _close(dave)
        await _close(erin)


@pytest.mark.redis
async def test_every_replica_shows_the_same_history(tmp_path: Path) -> None:
    """Two cloud replicas on Redis: a join made through the balancer shows in the history
    that each replica serves, whichever of them took the join."""
    async with running_stack([NODE_A], state_dir=tmp_path, store="redis",
                             replicas=2) as redis_stack:
        device = await _device(redis_stack, "grace", {NODE_A.id: 1.0})
        try:
            meeting = (await device.api.create_meeting()).id
            joined = await device.join(meeting)
        finally:
            await _close(device)
        for url in redis_stack.replica_urls:
            replica = replace(redis_stack, cloud_url=url)
            for _ in range(50):  # the flusher pushes within a round trip
                status, body = await _console(replica, "/v1/console/history")
                if any(e["participant"] == joined.participant_id for e in body["events"]):
                    break
                await asyncio.sleep(0.1)
            assert status == 200 and any(e["kind"] == "joined" and e["device"] == "grace"
                                         for e in body["events"]), (url, body)


@pytest.mark.redis
async def test_replicas_share_one_bounded_history(tmp_path: Path) -> None:
    """Two replicas' histories over one redis-server: each sees both's events, the newest
    first, no more than the ring's size; an entry that does not parse is skipped."""
    async with redis_server(tmp_path) as url:
        def client() -> aioredis.Redis:
            return aioredis.Redis.from_url(url, decode_responses=True)

        one, two, raw = RedisHistory(client(), size=5), RedisHistory(client(), size=5), client()
        try:
            await raw.lpush(HISTORY_KEY, "not json")
            for at in range(8):  # each replica's flusher pushes as events come
                replica = one if at % 2 else two
                replica.record(HistoryEvent(at=float(at), kind="joined", text=f"join {at}"))
                await replica.flush()
            two.record(HistoryEvent(at=8.0, kind="left", text="not pushed yet"))
            assert [e.at for e in await two.recent()][:2] == [8.0, 7.0]  # its own, at once
            await two.flush()
            await one.flush()  # nothing queued: nothing pushed
            for replica in (one, two):
                assert [e.at for e in await replica.recent()] == [8.0, 7.0, 6.0, 5.0, 4.0]
            assert await raw.llen(HISTORY_KEY) == 5  # trimmed in Redis too
            # the junk, pushed first, was trimmed away; pushed now, it is skipped and counted
            await raw.lpush(HISTORY_KEY, "not json")
            assert [e.at for e in await one.recent()] == [8.0, 7.0, 6.0, 5.0]
            assert one.unreadable == 1
        finally:
            await one.close()
            await two.close()
            await raw.aclose()
