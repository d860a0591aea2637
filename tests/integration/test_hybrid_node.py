"""The hybrid media node on the loopback stack (``pinhole-lab stack --hybrid``), no root.

Real processes: a cloud, a cloud media node and ``python -m hybrid_node``. "Local"
devices probe for real (they reach every node on loopback, the hybrid node among
them); a "remote" device (on the internet side) reports only the cloud node, as the
lab's firewall would make it. What each test proves is cited from the seeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from client.device import Device
from client.media import MediaError, MediaSession
from lab.pki import ORG, OTHER_ORG
from lab.stack import HYBRID, NodeSpec, Stack, running_stack
from tests.waiting import HANG_S, until
from wire.models import Event, Joined, ProbeResult, ReachabilityReport
from wire.transports import RungName

pytestmark = pytest.mark.slow

CLOUD_NODE = NodeSpec("node-a", "eu", 0)
HEARTBEAT = ["--heartbeat-s", "0.5", "--heartbeat-misses", "2"]


@contextlib.asynccontextmanager
async def stack_with(tmp_path: Path, hybrid: NodeSpec = HYBRID) -> AsyncIterator[Stack]:
    async with running_stack([CLOUD_NODE, hybrid], state_dir=tmp_path,
                             cloud_args=HEARTBEAT) as stack:
        yield stack


async def local(stack: Stack, name: str, org: str = ORG) -> Device:
    """A device inside the enterprise: it probes every node it is given, for real."""
    device = Device(stack.api())
    await device.register(org, stack.key_of(org), name)
    await device.discover(force=True)
    return device


async def remote(stack: Stack, name: str) -> Device:
    """A device on the internet side: the hybrid node is unreachable from there."""
    device = Device(stack.api())
    await device.register(ORG, stack.enrollment_key, name)
    await device.api.put_reachability(ReachabilityReport(results=[
        ProbeResult(node_id=CLOUD_NODE.id, rung=RungName.UDP_5004, reachable=True, rtt_ms=5.0),
        ProbeResult(node_id=HYBRID.id, rung=RungName.UDP_5004, reachable=False)]))
    return device


async def talk(sessions: Sequence[MediaSession], count: int = 20) -> None:
    for i in range(count):
        for n, session in enumerate(sessions):
            session.send_audio(bytes([n]) + i.to_bytes(2, "big") + bytes(157))
        await asyncio.sleep(0.005)
    want = count * (len(sessions) - 1)
    await until(lambda: all(len(s.payloads) >= want for s in sessions),
                f"each session heard {want} packets")


def logged(path: Path, pattern: str) -> bool:
    """``pattern`` is in the log a stack process writes to ``path``."""
    return path.exists() and re.search(pattern, path.read_text()) is not None


def heard(session: MediaSession) -> Counter[int]:
    return Counter(ssrc for ssrc, _, _ in session.payloads)


async def close(devices: Sequence[Device], sessions: Sequence[MediaSession] = ()) -> None:
    for session in sessions:
        session.close()
    for device in devices:
        await device.api.close()


async def node_packets_in(stack: Stack, node_id: str) -> int:
    """The relay's own counter, from the node's /metrics."""
    import aiohttp

    url = next(n["metrics_url"] for n in stack.nodes if n["id"] == node_id)
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        text = await response.text()
    found = re.search(r'pinhole_node_packets_total\{direction="in"\} (\d+)', text)
    assert found is not None
    return int(found.group(1))


async def test_local_meeting_stays_on_the_hybrid_node(tmp_path: Path) -> None:
    """Seed: "If all the meeting participants are located on the same network, media is not
    sent to Cisco Collaboration Cloud because the local hybrid media node handles the media
    streams." Both land on the hybrid node (rule hybrid-local), no cascade opens, and the
    cloud node relays nothing."""
    async with stack_with(tmp_path) as stack:
        alice, bob = await local(stack, "alice"), await local(stack, "bob")
        meeting = (await alice.api.create_meeting()).id
        joined = [await alice.join(meeting), await bob.join(meeting)]
        assert [j.node.id for j in joined] == [HYBRID.id, HYBRID.id]
        assert {j.reason.rule for j in joined} == {"hybrid-local"}
        assert joined[0].node.kind == "hybrid" and joined[0].node.org == ORG
        sessions = [await alice.connect(joined[0]), await bob.connect(joined[1])]
        assert [s.rung for s in sessions] == ["udp/5004", "udp/5004"]
        await talk(sessions)
        assert heard(sessions[0]) == {joined[1].ssrc: 20}
        assert heard(sessions[1]) == {joined[0].ssrc: 20}
        assert (await alice.api.meeting(meeting)).cascades == []
        assert await node_packets_in(stack, CLOUD_NODE.id) == 0
        await close([alice, bob], sessions)


async def test_mixed_meeting_cascades_out_from_the_hybrid_range_and_closes(
        tmp_path: Path) -> None:
    """Seed: the hybrid node "always initiates any needed connections", from the hybrid
    services' UDP range "33434-33598" to the cloud node's UDP 5004. A remote participant on a
    cloud node makes the hybrid node cascade out; all three hear each other exactly once;
    when the remote participant leaves, the cascade closes."""
    async with stack_with(tmp_path) as stack:
        alice, bob, carol = (await local(stack, "alice"), await local(stack, "bob"),
                             await remote(stack, "carol"))
        meeting = (await alice.api.create_meeting()).id
        joined = [await alice.join(meeting), await bob.join(meeting), await carol.join(meeting)]
        assert [j.node.id for j in joined] == [HYBRID.id, HYBRID.id, CLOUD_NODE.id]
        view = await alice.api.meeting(meeting)
        assert [(c.from_node, c.to_node) for c in view.cascades] == [(HYBRID.id, CLOUD_NODE.id)]
        sessions = [await d.connect(j) for d, j in zip((alice, bob, carol), joined, strict=True)]
        # the cascade latches once the hybrid node is told: on both of its ends
        await until(lambda: logged(tmp_path / f"{CLOUD_NODE.id}.log",
                                   r"leg cas-\w+ latched on udp/5004"),
                    "the cloud node latched the cascade")
        await until(lambda: logged(tmp_path / f"{HYBRID.id}.log", r"cascade \S+ to \S+ up on"),
                    "the hybrid node's cascade is up")
        await talk(sessions)
        for n, session in enumerate(sessions):
            assert heard(session) == {j.ssrc: 20 for m, j in enumerate(joined) if m != n}, n
        # the cloud node saw the cascade latch from the hybrid node's address and range
        log = (tmp_path / f"{CLOUD_NODE.id}.log").read_text()
        hybrid_address = next(n["address"] for n in stack.nodes if n["id"] == HYBRID.id)
        ports = [int(p) for p in re.findall(
            rf"leg cas-\w+ latched on udp/5004 from \('{re.escape(hybrid_address)}', (\d+)\)",
            log)]
        assert ports and all(33434 <= p <= 33598 for p in ports), ports
        await carol.api.leave(meeting, joined[2].participant_id)
        assert (await alice.api.meeting(meeting)).cascades == []
        await close([alice, bob, carol], sessions)


async def test_a_full_hybrid_node_overflows_to_the_cloud(tmp_path: Path) -> None:
    """Overflow: with capacity 2, the third local join goes to a cloud node, the reason says
    ``hybrid-overflow`` (the hybrid candidate ``full``), and the hybrid node cascades to it.
    The two joins come within one heartbeat: the cloud counts a leg when it is allocated."""
    small = replace(HYBRID, extra_args=("--capacity", "2"))
    async with stack_with(tmp_path, small) as stack:
        devices = [await local(stack, name) for name in ("alice", "bob", "dave")]
        meeting = (await devices[0].api.create_meeting()).id
        joined = [await d.join(meeting) for d in devices]
        assert [j.node.id for j in joined] == [HYBRID.id, HYBRID.id, CLOUD_NODE.id]
        assert joined[2].reason.rule == "hybrid-overflow"
        by = {c.node_id: c for c in joined[2].reason.candidates}
        assert by[HYBRID.id].excluded == "full"
        await close(devices)


async def test_another_org_never_sees_it_and_cannot_latch_on_it(tmp_path: Path) -> None:
    """Seed: "like hosting part of the Cisco Collaboration Cloud in your network that only you
    have access to". A device of another org is not given the hybrid node, is never assigned
    to it, and a leg request it sends there is not answered."""
    async with stack_with(tmp_path) as stack:
        mallory = await local(stack, "mallory", OTHER_ORG)
        listed = {n.id for n in (await mallory.api.nodes()).nodes}
        assert CLOUD_NODE.id in listed and HYBRID.id not in listed
        stored = await mallory.api.get_reachability()
        assert HYBRID.id not in {r.node_id for r in stored.report.results}
        meeting = (await mallory.api.create_meeting()).id
        joined = await mallory.join(meeting)
        assert joined.node.id == CLOUD_NODE.id
        assert HYBRID.id not in {c.node_id for c in joined.reason.candidates}
        # its own leg credentials, sent to the hybrid node: refused (RFC 8489 §9.1.3: an
        # unknown USERNAME is 401), nothing latched
        hybrid = next(n for n in stack.nodes if n["id"] == HYBRID.id)
        port = next(e["port"] for e in hybrid["endpoints"] if e["rung"] == "udp/5004")
        session = MediaSession(joined)
        from wire.address import Address

        with pytest.raises(MediaError, match="refused the leg on udp/5004: 401"):
            await session.connect_udp(Address(hybrid["address"], port), RungName.UDP_5004,
                                      timeout_s=HANG_S)  # the 401 ends it, not the time
        await close([mallory])


class Reassignments:
    """Each device's events, followed from construction on; :meth:`next` is the
    ``media.reassigned`` assignment each device gets next, in the devices' order."""

    def __init__(self, devices: Sequence[Device]) -> None:
        self.queues: list[asyncio.Queue[Event]] = [asyncio.Queue() for _ in devices]
        self.tasks = [asyncio.create_task(self._follow(d, q))
                      for d, q in zip(devices, self.queues, strict=True)]

    @staticmethod
    async def _follow(device: Device, into: asyncio.Queue[Event]) -> None:
        async for event in device.api.events():
            into.put_nowait(event)

    async def next(self, timeout_s: float = HANG_S) -> list[Joined]:
        moved = []
        for queue in self.queues:
            async with asyncio.timeout(timeout_s):
                while (event := await queue.get()).type != "media.reassigned":
                    pass
            assert event.assignment is not None
            moved.append(event.assignment)
        return moved

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_hybrid_node_killed_local_participants_move_to_the_cloud(tmp_path: Path) -> None:
    """The hybrid node fails mid-meeting: its participants get ``media.reassigned`` to a cloud
    node, reconnect and hear each other again."""
    async with stack_with(tmp_path) as stack:
        devices = [await local(stack, "alice"), await local(stack, "bob")]
        reassignments = Reassignments(devices)
        meeting = (await devices[0].api.create_meeting()).id
        joined = [await d.join(meeting) for d in devices]
        assert {j.node.id for j in joined} == {HYBRID.id}
        first = [await d.connect(j) for d, j in zip(devices, joined, strict=True)]
        await talk(first, 5)
        proc = stack.process_of(HYBRID.id)
        proc.kill()
        await proc.wait()
        moved = await reassignments.next()
        assert [m.node.id for m in moved] == [CLOUD_NODE.id, CLOUD_NODE.id]
        for session in first:
            session.close()
        sessions = [await d.connect(m) for d, m in zip(devices, moved, strict=True)]
        await talk(sessions)
        assert heard(sessions[0]) == {joined[1].ssrc: 20}
        assert heard(sessions[1]) == {joined[0].ssrc: 20}
        await reassignments.close()
        await close(devices, sessions)
