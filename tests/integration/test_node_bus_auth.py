"""Commands between cloud replicas over Redis pub/sub are authenticated (real redis-server,
real cloud and node processes).

Before the fix the replica holding a node forwarded whatever was published on
``pinhole:nodecmd:<node>`` down the node's control channel: anyone who could
publish to Redis could release a participant's leg (or crash the node with a
malformed cascade). Now a message needs the HMAC keyed from the cloud's node
secret; a forged one is ignored and counted (``pinhole_bus_forged_messages``).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from client.device import Device
from client.media import MediaSession
from cloud.node_bus import bus_key, seal
from cloud.redis_store import meeting_from_json
from lab.pki import ORG
from lab.stack import NodeSpec, Stack, running_stack
from tests.integration.redis_server import redis_server
from tests.metrics import metric
from tests.waiting import until, until_async
from wire.models import Joined
from wire.tls import client_context

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[Stack, str]]:
    async with redis_server(tmp_path) as url, running_stack(
            [NodeSpec("node-a", "eu", 0)], state_dir=tmp_path / "stack",
            cloud_args=["--store", url]) as running:
        yield running, url


async def _party(stack: Stack, name: str, meeting_id: str) -> tuple[Joined, MediaSession]:
    device = Device(stack.api())
    try:
        await device.register(ORG, stack.enrollment_key, name)
        await device.discover()
        joined = await device.join(meeting_id)
        return joined, await device.connect(joined)
    finally:
        await device.api.close()


async def _send(sender: MediaSession) -> None:
    for i in range(10):
        sender.send_audio(i.to_bytes(4, "big") + bytes(156))
        await asyncio.sleep(0.01)


async def _flows(sender: MediaSession, receiver: MediaSession) -> None:
    """The sender's 10 packets all reach the receiver."""
    want = receiver.counters.packets_received + 10
    await _send(sender)
    await until(lambda: receiver.counters.packets_received >= want, "10 packets relayed")


async def _cloud_metric(stack: Stack, name: str) -> float:
    return await metric(stack.cloud_url + "/metrics", f"pinhole_{name}",
                        context=client_context(stack.ca_file))


async def _node_metric(stack: Stack, series: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(
            stack.nodes[0]["metrics_url"]) as response:
        text = await response.text()
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def _cloud_counted(stack: Stack, name: str, count: int) -> None:
    async def reached() -> bool:
        return await _cloud_metric(stack, name) >= count

    await until_async(reached, f"the cloud's {name} reached {count}")
    assert await _cloud_metric(stack, name) == count


async def test_a_forged_publish_is_ignored_and_counted(stack: tuple[Stack, str]) -> None:
    running, url = stack
    meeting = "bus-test"
    first = Device(running.api())
    await first.register(ORG, running.enrollment_key, "creator")
    await first.api.create_meeting(meeting_id=meeting)
    await first.api.close()
    alice, a = await _party(running, "alice", meeting)
    _bob, b = await _party(running, "bob", meeting)
    redis = aioredis.from_url(url, decode_responses=True)
    try:
        await _flows(a, b)
        record = meeting_from_json(str(await redis.get(f"pinhole:meeting:{meeting}")))
        leg_id = next(p.leg_id for p in record.participants if p.id == alice.participant_id)
        channel = "pinhole:nodecmd:node-a"
        release = json.dumps({"type": "release_leg", "leg_id": leg_id})
        # a well-formed command without the HMAC, and one sealed with a wrong key
        await redis.publish(channel, release)
        await redis.publish(channel, seal(b"k" * 32, channel, release, time.time()))
        await _cloud_counted(running, "bus_forged_messages", 2)  # both handled: ignored
        await _flows(a, b)  # alice's leg is still there
        # a sealed, malformed open_cascade reaches the node, which refuses it and lives on
        peer = {"id": "peer", "kind": "cloud", "region": "r", "address": "127.0.0.1",
                "endpoints": [{"rung": "udp/5004", "transport": "udp", "port": 5004}]}
        bad = json.dumps({"type": "open_cascade", "meeting_id": meeting, "peer": peer,
                          "leg_id": "c1", "ice": {"node_ufrag": "abcd", "client_ufrag": "efgh",
                                                  "pwd": "p" * 24},
                          "srtp": {"profile": "AEAD_AES_128_GCM", "client_to_node": "A" * 40,
                                   "node_to_client": "A" * 40}})
        key = bus_key(running.node_secret)
        await redis.publish(channel, seal(key, channel, bad, time.time()))
        # the node answers control_refused; the cloud counts it
        await _cloud_counted(running, "node_refused_commands", 1)
        await _flows(b, a)
        # and a sealed release does what it says: authenticated forwarding still works
        await redis.publish(channel, seal(key, channel, release, time.time()))

        async def released() -> bool:
            return await _node_metric(running, "pinhole_node_legs") == 1

        await until_async(released, "the node released alice's leg")
        unlatched = 'pinhole_node_drops_total{reason="unlatched"}'
        before, heard = await _node_metric(running, unlatched), b.counters.packets_received
        await _send(a)

        async def dropped() -> bool:
            return await _node_metric(running, unlatched) >= before + 10

        await until_async(dropped, "the node dropped alice's 10 packets as unlatched")
        assert b.counters.packets_received == heard
    finally:
        a.close()
        b.close()
        await redis.aclose()
