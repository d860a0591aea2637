"""A WebRTC stack nobody here wrote (aiortc) joins Pinhole meetings on a loopback stack.

Before, only Pinhole's own client could use a media node: no SDP, no DTLS-SRTP.
Here aiortc sends its SDP offer to ``POST /v1/meetings/{id}/webrtc`` (RFC 8829
§5.2), applies the cloud's answer (§5.3), runs full ICE against the node's
ICE-lite (RFC 8445 §2.5), does DTLS-SRTP with the node as server (RFC 5764,
RFC 8842 §5.1), and its media meets the others' through the node:

- with Pinhole's own client: RTP both ways, decrypted and counted on each side;
- with another aiortc peer: VP8 video (RFC 7741) encoded by one and decoded by
  the other, a keyframe asked for with PLI (RFC 4585 §6.3.1) through the node.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from client import CallOptions, Device, Enrollment
from lab.pki import ORG
from lab.stack import NodeSpec, Stack, running_stack
from tests.integration.webrtc_peer import Peer, aiortc_peer, selected_remote_port
from tests.waiting import HANG_S, until, until_async
from wire.models import Event, WebRtcJoined

# one stack for the module (:func:`stack`): every test runs on the module's event loop
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("loopback_host"),
              pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One stack for the module's tests: each has its own peers, devices and meeting
    (:func:`_meeting`), and none changes the cloud or its node (the test that kills a node
    starts its own stack)."""
    async with running_stack([NodeSpec("node-a", "eu", 0)],
                             state_dir=tmp_path_factory.mktemp("webrtc-aiortc")) as running:
        yield running


def _meeting(name: str) -> str:
    """A meeting id of this test's own on the module's stack."""
    return f"{name}-{secrets.token_hex(4)}"


class Tone(AudioStreamTrack):
    """aiortc's silence, as its own audio source: 20 ms frames of 48 kHz."""

    kind = "audio"


async def test_aiortc_and_pinhole_client_hear_each_other(stack: Stack) -> None:
    """aiortc (opus) and Pinhole's client (PCMU) in one meeting: each side decrypts and
    counts the other's RTP; the node answered with PCMU and opus (RFC 3264 §6.1)."""
    peer, meeting = await aiortc_peer(stack, "browser"), _meeting("mixed")
    try:
        await peer.device.api.create_meeting(meeting_id=meeting)
        peer.pc.addTrack(Tone())
        joined = await peer.join(meeting)
        assert joined.node.id == "node-a" and joined.reason.rule == "lowest-load"
        assert "a=ice-lite" in joined.sdp and "a=setup:passive" in joined.sdp

        client = Device(stack.api())
        try:
            report = await client.call(meeting, CallOptions(
                enrollment=Enrollment(ORG, stack.enrollment_key, "desk"), seconds=4.0))
        finally:
            await client.close()
            await client.api.close()
        assert report.packets_received > 0  # aiortc's opus, relayed, decrypted, counted
        assert (await peer.inbound("audio"))["packetsReceived"] > 0
        assert peer.frames["audio"] > 0  # the client's PCMU, decoded by aiortc
        assert selected_remote_port(peer) == _node_port(joined, "udp/5004")
    finally:
        await peer.close()


def _node_port(joined: WebRtcJoined, rung: str) -> int:
    return next(e.port for e in joined.node.endpoints if e.rung == rung)


async def test_two_aiortc_peers_decode_each_others_video(stack: Stack) -> None:
    """VP8 from each aiortc peer reaches the other through the node, in the slot its
    answer signalled (RFC 5576 §4.1), and is decoded: frames on both sides."""
    alice, bob = await aiortc_peer(stack, "alice"), await aiortc_peer(stack, "bob")
    meeting = _meeting("video")
    try:
        await alice.device.api.create_meeting(meeting_id=meeting)
        for peer in (alice, bob):
            peer.pc.addTrack(VideoStreamTrack())
        await alice.join(meeting)
        await bob.join(meeting)

        async def decoded() -> bool:
            return alice.frames["video"] > 0 and bob.frames["video"] > 0

        await until_async(decoded, "video frames decoded on both sides", timeout_s=HANG_S)
        for peer in (alice, bob):
            assert (await peer.inbound("video"))["packetsReceived"] > 0
    finally:
        await alice.close()
        await bob.close()


async def test_a_dead_node_asks_its_webrtc_endpoints_to_offer_again(tmp_path: Path) -> None:
    """Defect it guards against: on a node's death the cloud moved every participant with
    ``place``, which gives SDES keys; a WebRTC endpoint's keys come from DTLS with the dead
    node (RFC 5764 §4.2), so it was left with a leg it could not use. Now the cloud removes
    it and tells it ``media.reoffer``; its new offer (RFC 8829 §5.2) lands on a live node
    and video is decoded again on both sides."""
    specs = [NodeSpec("node-a", "eu", 0), NodeSpec("node-b", "eu", 0)]
    async with running_stack(specs, state_dir=tmp_path) as stack:
        alice, bob = await aiortc_peer(stack, "alice"), await aiortc_peer(stack, "bob")
        heard: list[Event] = []
        listeners = [asyncio.create_task(_listen(p, heard)) for p in (alice, bob)]
        try:
            await alice.device.api.create_meeting(meeting_id="reoffer")
            for peer in (alice, bob):
                await _offer_video(peer, "reoffer")
            first = {alice.joined.node.id if alice.joined else "", bob.joined.node.id
                     if bob.joined else ""}
            assert len(first) == 1  # rule meeting-node: one node, no cascade
            [dead] = first
            await until_async(lambda: _both_decode(alice, bob), "video before the failure")

            await stack.kill(dead)
            await until(lambda: sum(e.type == "media.reoffer" for e in heard) == 2,
                        "media.reoffer for both endpoints")
            assert {e.node_id for e in heard if e.type == "media.reoffer"} == {dead}
            for peer in (alice, bob):
                await peer.pc.close()
                peer.renew()
                await _offer_video(peer, "reoffer")
                assert peer.joined is not None and peer.joined.node.id != dead
            await until_async(lambda: _both_decode(alice, bob), "video after the re-offer")
            view = await alice.device.api.meeting("reoffer")
            assert {p.node_id for p in view.participants} == {"node-a", "node-b"} - {dead}
            assert len(view.participants) == 2  # the dead node's two are gone
        finally:
            for task in listeners:
                task.cancel()
            await alice.close()
            await bob.close()


async def _offer_video(peer: Peer, meeting: str) -> None:
    peer.pc.addTrack(VideoStreamTrack())
    await peer.join(meeting)


async def _both_decode(alice: Peer, bob: Peer) -> bool:
    return alice.frames["video"] > 0 and bob.frames["video"] > 0


async def _listen(peer: Peer, heard: list[Event]) -> None:
    async for event in peer.device.api.events():
        heard.append(event)
