"""A device's events outlive the loss of the cloud's pub/sub connection to the store (real
redis-server, real cloud and media node processes, the device's own events client).

The defect it pins down: after the store's pub/sub connection is lost, device events
stop while the WebSocket stays open. The task that forwarded a device's Redis
subscription down its ``/v1/events`` WebSocket ended with the connection (a Redis
primary killed and failed over, or the connection cut), and the WebSocket stayed open,
so the device never reconnected: a ``media.reassigned`` sent after a media node's
death never reached it, its own reassign was refused (409: already moved) and its call
stayed on the dead node for good. Now the subscription is made again, and what was
published while it was down is replayed from the device's event log in the store, once.

Faults made on the real Redis: ``CLIENT KILL TYPE pubsub`` (every subscription's
connection cut), and subscriptions refused for a while (an ACL without ``SUBSCRIBE``)
while events are published: the window of a failover between the new primary taking
writes and the replica subscribing on it again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from client.api import CloudApi
from client.device import Device
from lab.pki import ORG
from lab.stack import NodeSpec, Stack, running_stack
from tests.metrics import metric
from tests.prereqs import require_tool
from tests.waiting import until, until_async
from wire.models import Event
from wire.tls import client_context

pytestmark = [pytest.mark.redis, pytest.mark.slow]

DELIVERY_S = 8.0  # the bound on an event's delivery after the fault: a hang, not a margin


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    require_tool("redis-server")
    async with running_stack([NodeSpec("node-a", "eu", 0)], state_dir=tmp_path,
                             store="redis") as running:
        yield running


async def _device(stack: Stack, name: str) -> Device:
    device = Device(stack.api())
    await device.register(ORG, stack.enrollment_key, name)
    await device.discover()
    return device


async def _subscriptions(redis: aioredis.Redis, device_id: str) -> int:
    [(_, count)] = await redis.pubsub_numsub(f"pinhole:events:{device_id}")
    return int(count)


async def _cloud_metric(stack: Stack, name: str) -> float:
    return await metric(stack.cloud_url + "/metrics", f"pinhole_{name}",
                        context=client_context(stack.ca_file))


async def _follow(api: CloudApi, heard: list[Event]) -> None:
    async for event in api.events():
        heard.append(event)


def _heard(heard: list[Event], kind: str, participant_id: str) -> int:
    return sum(e.type == kind and e.participant_id == participant_id for e in heard)


async def test_events_reach_the_device_after_its_subscription_is_lost(stack: Stack) -> None:
    redis = aioredis.Redis.from_url(stack.store_url, decode_responses=True)
    alice, bob = await _device(stack, "alice"), await _device(stack, "bob")
    assert alice.registration is not None
    alice_id = alice.registration.device_id
    heard: list[Event] = []
    following = asyncio.create_task(_follow(alice.api, heard))
    try:
        meeting = await alice.api.create_meeting(title="store loss")
        await alice.join(meeting.id)

        async def subscribed() -> bool:
            return await _subscriptions(redis, alice_id) >= 1

        await until_async(subscribed, "alice's event subscription live")

        # 1. The subscription's connection is cut; an event raised after it arrives.
        assert await redis.client_kill_filter(_type="pubsub") >= 1
        first = await bob.join(meeting.id)
        await until(lambda: _heard(heard, "participant.joined", first.participant_id) == 1,
                    "alice heard bob join after her subscription was cut",
                    timeout_s=DELIVERY_S)

        # 2. Cut again, and no subscription can be made while bob leaves: the event
        # published meanwhile arrives once the store takes subscriptions again.
        await until_async(subscribed, "alice's event subscription live again")
        await redis.acl_setuser("default", enabled=True, commands=["-subscribe"])
        try:
            assert await redis.client_kill_filter(_type="pubsub") >= 1
            assert await _subscriptions(redis, alice_id) == 0
            await bob.api.leave(meeting.id, first.participant_id)
            assert await _subscriptions(redis, alice_id) == 0  # published to nobody
        finally:
            await redis.acl_setuser("default", enabled=True, commands=["+subscribe"])
        await until(lambda: _heard(heard, "participant.left", first.participant_id) == 1,
                    "alice heard bob leave while she could not subscribe",
                    timeout_s=DELIVERY_S)

        # Once, not again with a later event: bob joins again, alice hears that last.
        second = await bob.join(meeting.id)
        await until(lambda: _heard(heard, "participant.joined", second.participant_id) == 1,
                    "alice heard bob join again", timeout_s=DELIVERY_S)
        assert [e.type for e in heard] == [
            "participant.joined", "participant.left", "participant.joined"], heard
        assert not following.done(), "alice's events WebSocket closed"
        assert await _cloud_metric(stack, "event_subscriptions_lost") >= 2
        assert await _cloud_metric(stack, "events_replayed") >= 1
        assert await _cloud_metric(stack, "event_gaps") == 0
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        await alice.api.close()
        await bob.api.close()
        await redis.aclose()
