"""Screen sharing across nodes, and the floor enforced by the nodes, on the loopback stack.

docs/design.md "Content (screen sharing)": a meeting's content crosses a content cascade
between two nodes that both carry a content leg of it (a cloud node's, and a hybrid
node's dialling out from its premises), never its audio/video cascade; and every node
relays content from the floor's holder only, as the cloud tells it over the node control
channel (``set_floor``): anyone else's is dropped and counted (``not_presenter``).

Real processes: the cloud, media nodes and a hybrid node; the devices are the client
library in the test. Each device reports one node only (a whitelisting firewall), so the
two participants land on two nodes (tests/integration/test_cloud_cascade.py). Verdicts
are counts (frames received, packets the node dropped), never times.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from client.device import Device
from client.media import MediaSession
from lab.pki import ORG
from lab.stack import HYBRID, NodeSpec, Stack, running_stack
from tests.integration.test_hybrid_node import local
from tests.metrics import metric
from tests.waiting import until_async
from wire.models import Joined, ProbeResult, ReachabilityReport
from wire.transports import RungName

pytestmark = pytest.mark.slow

PACKETS_PER_FRAME = 30  # a shared screen's frame: a burst of tens of packets
NODE_A, NODE_B = NodeSpec("node-a", "eu", 0), NodeSpec("node-b", "us", 0)


async def _reaching(stack: Stack, name: str, reachable: str, nodes: tuple[str, ...]) -> Device:
    """A device whose firewall lets it reach ``reachable`` only (UDP and TCP 5004)."""
    device = Device(stack.api())
    await device.register(ORG, stack.enrollment_key, name)
    await device.api.put_reachability(ReachabilityReport(results=[
        ProbeResult(node_id=node, rung=rung, reachable=node == reachable,
                    rtt_ms=5.0 if node == reachable else None)
        for node in nodes for rung in (RungName.UDP_5004, RungName.TCP_5004)]))
    return device


def _dropped(stack: Stack, node: str) -> Callable[[], Awaitable[float]]:
    """The content packets ``node`` dropped because their sender did not hold the floor."""
    url = next(n["metrics_url"] for n in stack.nodes if n["id"] == node)

    async def count() -> float:
        return await metric(url, "pinhole_node_drops_total", reason="not_presenter")

    return count


def _frames_from(session: MediaSession, ssrc: int) -> int:
    """Frames of ``ssrc`` the session received (a frame's last packet has the marker)."""
    return sum(1 for s, _, _ in session.payloads if s == ssrc) // PACKETS_PER_FRAME


async def _send_until(sender: MediaSession, arrived: Callable[[], bool], what: str) -> None:
    """A frame every 50 ms until ``arrived`` (the content cascade may still be latching)."""
    frame = 0

    async def once() -> bool:
        nonlocal frame
        sender.send_frame(frame, PACKETS_PER_FRAME)
        frame += 1
        await asyncio.sleep(0.05)
        return arrived()

    await until_async(once, what, timeout_s=60)


class Sharing:
    """Two participants of one meeting on two nodes, each with its media and content legs."""

    def __init__(self, devices: list[Device], joined: list[Joined]) -> None:
        self.devices, self.joined = devices, joined
        self.media: list[MediaSession] = []
        self.content: list[MediaSession] = []
        self.legs: list[Joined] = []

    @classmethod
    async def start(cls, alice: Device, bob: Device) -> Sharing:
        meeting = (await alice.api.create_meeting("shared")).id
        joined = [await alice.join(meeting), await bob.join(meeting)]
        sharing = cls([alice, bob], joined)
        presenter = joined[0]
        floor = await alice.api.take_floor(meeting, presenter.participant_id)
        assert floor.presenter == presenter.participant_id
        for device, mine in zip(sharing.devices, joined, strict=True):
            sharing.media.append(await device.connect(mine))
            leg = await device.api.open_content(meeting, mine.participant_id)
            sharing.legs.append(leg)
            sharing.content.append(await device.connect(leg))
        return sharing

    @property
    def meeting(self) -> str:
        return self.joined[0].meeting_id

    async def close(self) -> None:
        """Both leave, the second first: the meeting no longer spans two nodes, and both
        its cascades close (the content one too)."""
        for session in (*self.media, *self.content):
            session.close()
        alice, bob = self.devices
        await bob.api.leave(self.meeting, self.joined[1].participant_id)
        assert (await alice.api.meeting(self.meeting)).cascades == []
        await alice.api.leave(self.meeting, self.joined[0].participant_id)
        for device in self.devices:
            await device.close()


@pytest.fixture
async def clouds(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack([NODE_A, NODE_B], state_dir=tmp_path) as running:
        yield running


async def _crosses_and_is_enforced(stack: Stack, sharing: Sharing, nodes: tuple[str, str]
                                   ) -> None:
    """The presenter's frames reach the other node's content leg through a content cascade,
    never an audio leg; the other's frames are dropped by its node until it takes the floor
    over, then cross the other way."""
    (a_content, b_content), (a_leg, b_leg) = sharing.content, sharing.legs
    view = await sharing.devices[0].api.meeting(sharing.meeting)
    assert [p.node_id for p in view.participants] == list(nodes)
    assert sorted(c.content for c in view.cascades) == [False, True]  # audio/video, content
    assert all({c.from_node, c.to_node} == set(nodes) for c in view.cascades)

    await _send_until(a_content, lambda: _frames_from(b_content, a_leg.ssrc) >= 3,
                      "the presenter's frames crossed the content cascade")
    assert set(Counter(s for s, _, _ in b_content.payloads)) == {a_leg.ssrc}
    for media in sharing.media:  # content never entered an audio/video leg
        assert a_leg.ssrc not in {s for s, _, _ in media.payloads}

    # the other participant sends content without the floor: its node drops every packet
    dropped = _dropped(stack, nodes[1])
    before = await dropped()
    for frame in range(3):
        b_content.send_frame(frame, PACKETS_PER_FRAME)

    async def all_dropped() -> bool:
        return await dropped() >= before + 3 * PACKETS_PER_FRAME

    await until_async(all_dropped, f"{nodes[1]} dropped the non-presenter's 3 frames")
    assert b_leg.ssrc not in {s for s, _, _ in a_content.payloads}

    # it takes the floor over: the cloud tells the nodes, and its content crosses
    bob, b_joined = sharing.devices[1], sharing.joined[1]
    floor = await bob.api.take_floor(sharing.meeting, b_joined.participant_id, take_over=True)
    assert floor.presenter == b_joined.participant_id and floor.change == "taken_over"
    await _send_until(b_content, lambda: _frames_from(a_content, b_leg.ssrc) >= 3,
                      "the new presenter's frames crossed back")



async def test_content_crosses_a_cloud_cascade_and_only_the_presenter_is_relayed(
        clouds: Stack) -> None:
    nodes = (NODE_A.id, NODE_B.id)
    alice = await _reaching(clouds, "alice", NODE_A.id, nodes)
    bob = await _reaching(clouds, "bob", NODE_B.id, nodes)
    sharing = await Sharing.start(alice, bob)
    try:
        assert [leg.node.id for leg in sharing.legs] == list(nodes)
        assert [s.rung for s in sharing.content] == [RungName.TCP_5004] * 2
        await _crosses_and_is_enforced(clouds, sharing, nodes)
    finally:
        await sharing.close()


async def test_content_crosses_the_hybrid_nodes_cascade(tmp_path: Path) -> None:
    """The hybrid node dials its cascades out (UDP from 33434-33598, then TCP 5004, TLS
    443); its content cascade is dialled the same way, and carries the screen between the
    premises and a participant on the cloud."""
    async with running_stack([NODE_A, HYBRID], state_dir=tmp_path) as stack:
        alice = await local(stack, "alice")  # inside: placed on the hybrid node
        bob = await _reaching(stack, "bob", NODE_A.id, (NODE_A.id, HYBRID.id))
        sharing = await Sharing.start(alice, bob)
        try:
            assert [leg.node.id for leg in sharing.legs] == [HYBRID.id, NODE_A.id]
            await _crosses_and_is_enforced(stack, sharing, (HYBRID.id, NODE_A.id))
        finally:
            await sharing.close()
