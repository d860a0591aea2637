"""A meeting that spans two nodes: the cloud cascades them and media crosses both ways.

Each device reports only one node as reachable (a whitelisting firewall), so
assignment puts them on different nodes (docs/design.md "Assignment"); the cloud
then allocates a cascade leg on one node and tells the other to open it, and
closes it when the meeting no longer spans both.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from client.device import Device
from lab.pki import ORG
from lab.stack import NodeSpec, Stack, running_stack
from tests.waiting import until
from wire.models import ProbeResult, ReachabilityReport
from wire.transports import RungName

pytestmark = pytest.mark.slow


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack([NodeSpec("node-a", "eu", 0), NodeSpec("node-b", "us", 0)],
                             state_dir=tmp_path) as running:
        yield running


async def _device(stack: Stack, name: str, reachable: str) -> Device:
    device = Device(stack.api())
    await device.register(ORG, stack.enrollment_key, name)
    await device.api.put_reachability(ReachabilityReport(results=[
        ProbeResult(node_id=node, rung=RungName.UDP_5004, reachable=node == reachable,
                    rtt_ms=5.0 if node == reachable else None)
        for node in ("node-a", "node-b")
    ]))
    return device


def logged(path: Path, pattern: str) -> bool:
    """``pattern`` is in the log a stack process writes to ``path``."""
    return path.exists() and re.search(pattern, path.read_text()) is not None


async def test_meeting_across_two_nodes_is_cascaded_and_media_flows(stack: Stack) -> None:
    alice = await _device(stack, "alice", "node-a")
    bob = await _device(stack, "bob", "node-b")
    meeting = (await alice.api.create_meeting("split")).id
    a_joined = await alice.join(meeting)
    b_joined = await bob.join(meeting)
    assert (a_joined.node.id, b_joined.node.id) == ("node-a", "node-b")
    view = await alice.api.meeting(meeting)
    assert [(c.from_node, c.to_node) for c in view.cascades] == [("node-b", "node-a")]

    a, b = await alice.connect(a_joined), await bob.connect(b_joined)
    # the cascade leg latches as soon as node-b is told: on both of its ends
    await until(lambda: logged(stack.state_dir / "node-a.log",
                               r"leg cas-\w+ latched on udp/5004"), "node-a latched the cascade")
    await until(lambda: logged(stack.state_dir / "node-b.log", r"cascade \S+ to node-a up on"),
                "node-b's cascade is up")
    for i in range(30):
        a.send_audio(i.to_bytes(2, "big") + bytes(158))
        b.send_audio(i.to_bytes(2, "big") + bytes(158))
        await asyncio.sleep(0.005)
    await until(lambda: len(a.payloads) >= 30 and len(b.payloads) >= 30,
                "each heard the other's 30 packets across the cascade")
    assert Counter(s for s, _, _ in a.payloads) == {b_joined.ssrc: 30}
    assert Counter(s for s, _, _ in b.payloads) == {a_joined.ssrc: 30}

    await bob.api.leave(meeting, b_joined.participant_id)
    assert (await alice.api.meeting(meeting)).cascades == []
    for session in (a, b):
        session.close()
    for device in (alice, bob):
        await device.api.close()
