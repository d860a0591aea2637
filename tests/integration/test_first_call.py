"""A first real call on loopback: real processes, HTTPS with a generated CA, STUN, SRTP.

Two clients register, probe the node over UDP, report, join one meeting, latch
their legs with authenticated Binding Requests (docs/design.md "Media leg") and
exchange SRTP that the node authenticates, re-protects and forwards (the SFU,
docs/design.md "SRTP"). A tampered packet is dropped and counted, never forwarded
(RFC 3711 §3.3: "the receiver MUST ... discard the packet" on a failed tag).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from client.device import Device
from client.media import MediaSession
from lab.pki import ORG
from lab.stack import NodeSpec, Stack, running_stack
from tests.waiting import until, until_async
from wire.models import Joined

pytestmark = pytest.mark.slow


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    nodes = [NodeSpec("node-a", "eu", 0)]
    async with running_stack(nodes, state_dir=tmp_path) as running:
        yield running


async def _party(stack: Stack, name: str, meeting_id: str | None) -> tuple[Device, Joined,
                                                                          MediaSession, str]:
    device = Device(stack.api())
    await device.register(ORG, stack.enrollment_key, name)
    outcomes = await device.discover()
    udp = [o for o in outcomes if o.target.rung == "udp/5004"]
    assert udp and udp[0].rtt_ms is not None, outcomes
    assert udp[0].mapped is not None and udp[0].mapped.host.startswith("127.")
    stored = await device.api.get_reachability()
    assert stored.expires_at > stored.stored_at
    if meeting_id is None:
        meeting_id = (await device.api.create_meeting("first call")).id
    joined = await device.join(meeting_id)
    assert joined.node.id == "node-a"
    session = await device.connect(joined)
    assert session.rung == "udp/5004"
    return device, joined, session, meeting_id


async def _node_metric(stack: Stack, name: str, labels: str) -> float:
    url = stack.nodes[0]["metrics_url"]
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        text = await response.text()
    pattern = rf"^{name}\{{{labels}\}} (\S+)$" if labels else rf"^{name} (\S+)$"
    match = re.search(pattern, text, re.M)
    return float(match.group(1)) if match else 0.0


async def test_two_clients_exchange_srtp_through_the_node(stack: Stack) -> None:
    alice, a_joined, a, meeting = await _party(stack, "alice", None)
    bob, b_joined, b, _ = await _party(stack, "bob", meeting)
    assert a_joined.ssrc != b_joined.ssrc  # SSRCs unique per meeting

    sent_by_a = [b"A" + i.to_bytes(2, "big") + bytes(157) for i in range(50)]
    sent_by_b = [b"B" + i.to_bytes(2, "big") + bytes(157) for i in range(50)]
    for pa, pb in zip(sent_by_a, sent_by_b, strict=True):
        a.send_audio(pa)
        b.send_audio(pb)
        await asyncio.sleep(0.005)
    await until(lambda: len(b.payloads) >= 50 and len(a.payloads) >= 50,
                "each client heard the other's 50 packets")

    # both directions arrived intact: same payloads, same SSRC as the sender's
    assert [p for ssrc, _, p in b.payloads if ssrc == a_joined.ssrc] == sent_by_a
    assert [p for ssrc, _, p in a.payloads if ssrc == b_joined.ssrc] == sent_by_b
    assert a.counters.drops == {} and b.counters.drops == {}

    # a tampered packet is dropped and counted by the node, and never reaches bob
    before = b.counters.packets_received
    auth_drops = await _node_metric(stack, "pinhole_node_drops_total", 'reason="auth"')
    good = a.protect(_rtp(a_joined.ssrc, 999))
    tampered = good[:20] + bytes([good[20] ^ 0x01]) + good[21:]
    a.send_raw(tampered)

    async def dropped() -> bool:
        seen = await _node_metric(stack, "pinhole_node_drops_total", 'reason="auth"')
        return seen >= auth_drops + 1

    await until_async(dropped, "the node counted the tampered packet")
    assert await _node_metric(stack, "pinhole_node_drops_total", 'reason="auth"') == auth_drops + 1
    assert b.counters.packets_received == before

    view = await alice.api.meeting(meeting)
    assert {p.id for p in view.participants} == {a_joined.participant_id,
                                                  b_joined.participant_id}
    for session in (a, b):
        session.close()
    for device in (alice, bob):
        await device.api.close()


def _rtp(ssrc: int, seq: int) -> bytes:
    from wire.rtp import build_rtp

    return build_rtp(payload_type=0, sequence=seq, timestamp=seq * 160, ssrc=ssrc,
                     payload=bytes(160))


async def test_established_legs_keep_relaying_while_the_cloud_is_gone(stack: Stack) -> None:
    """"while the cloud is unreachable, established legs keep relaying"; the node
    notices (its control channel is down) and keeps trying to reconnect."""
    alice, a_joined, a, meeting = await _party(stack, "alice", None)
    bob, _, b, _ = await _party(stack, "bob", meeting)
    for device in (alice, bob):
        await device.api.close()
    cloud = stack.processes[0]
    cloud.terminate()
    await cloud.wait()

    async def disconnected() -> bool:
        return await _node_metric(stack, "pinhole_node_control_connected", "") == 0.0

    await until_async(disconnected, "the node saw its control channel go down")
    for i in range(20):
        a.send_audio(i.to_bytes(2, "big") + bytes(158))
        await asyncio.sleep(0.005)
    await until(lambda: len(b.payloads) >= 20, "bob heard alice's 20 packets")
    assert len([p for ssrc, _, p in b.payloads if ssrc == a_joined.ssrc]) == 20
    for session in (a, b):
        session.close()
