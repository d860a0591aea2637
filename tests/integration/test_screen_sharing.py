"""Screen sharing end to end on a loopback stack: ``pinhole call --share`` parties.

Seed (FNR): "Cisco Spark uses TCP for messaging, file transfer, and screen sharing and
UDP as the preferred method for audio and video"; ports table "Screen Sharing (in app)
TCP 5004*". Each party is a real ``pinhole call`` process that talks until the test has
seen what it waits for (tests/integration/calls.py), then hangs up (Ctrl-C) and prints
its ``--json`` report with its ``content`` section.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from client.api import CloudApi
from lab.stack import NodeSpec, Stack, running_stack
from tests.integration.calls import UNTIL_HUNG_UP_S, Party, hang_up_all
from tests.metrics import metric
from tests.waiting import until_async
from wire.tls import client_context

# one stack for the module (:func:`stack`): every test runs on the module's event loop
pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

#: two frames of 30 packets: enough bytes that the node relayed a frame or more
FRAMES_OF_BYTES = 2 * 30 * 1100


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One stack for the module's tests: each has its own meeting (:func:`_meeting`) and
    parties, reads the counters before and after, and none changes the cloud or its node
    (the test whose node has a short consent timeout starts its own stack)."""
    async with running_stack([NodeSpec("node-a", "eu", 0)],
                             state_dir=tmp_path_factory.mktemp("screen-sharing") / "stack",
                             cloud_args=["--probe-ttl-s", "600"]) as running:
        yield running


def _meeting(name: str) -> str:
    """A meeting id of this test's own on the module's stack."""
    return f"{name}-{secrets.token_hex(4)}"


async def _call(stack: Stack, tmp_path: Path, name: str, meeting: str, *args: str,
                profile: str = "desktop", seconds: float = UNTIL_HUNG_UP_S) -> Party:
    return await Party.start(stack, "--cache-dir", str(tmp_path / name), "--json",
                             "--name", name, "--profile", profile, "call", "--meeting",
                             meeting, "--create", "--seconds", str(seconds), *args)


async def _cloud_metric(stack: Stack, kind: str) -> float:
    return await metric(stack.cloud_url + "/metrics", "pinhole_floor_changes_total",
                        context=client_context(stack.ca_file), kind=kind)


async def _content_out(stack: Stack) -> float:
    """Content bytes the stack's node has relayed to participants (its metrics)."""
    return await metric(stack.nodes[0]["metrics_url"], "pinhole_node_content_bytes_total",
                        direction="out")


async def _presenting(stack: Stack, watcher: CloudApi, meeting: str, parties: int,
                      since: float = 0.0) -> str:
    """``parties`` participants in ``meeting``, one presenting, every content leg latched
    and the node relaying content (``FRAMES_OF_BYTES`` more than ``since``, its count before
    the parties started): the presenter's id."""
    seen: list[Any] = []

    async def sharing() -> bool:
        try:
            view = await watcher.meeting(meeting)
        except Exception:  # not created yet
            return False
        seen[:] = [view.presenter, [(p.transport, p.content_transport)
                                    for p in view.participants]]
        return (len(view.participants) == parties and view.presenter is not None
                and all(p.content_transport for p in view.participants)
                and await _content_out(stack) >= since + FRAMES_OF_BYTES)

    try:
        await until_async(sharing, "content relayed to every participant", timeout_s=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {seen}") from None
    presenter = (await watcher.meeting(meeting)).presenter
    assert presenter is not None
    return presenter


async def test_content_on_tcp_5004_while_audio_is_on_udp_5004(
        stack: Stack, tmp_path: Path) -> None:
    meeting, watcher = _meeting("share"), await stack.register("watcher")
    granted, content = await _cloud_metric(stack, "granted"), await _content_out(stack)
    try:
        parties = [await _call(stack, tmp_path, "alice", meeting, "--share"),
                   await _call(stack, tmp_path, "bob", meeting)]
        presenter = await _presenting(stack, watcher, meeting, 2, content)
        view = await watcher.meeting(meeting)  # the node's latched events, each to its leg
        assert [(p.transport, p.content_transport) for p in view.participants] == [
            ("udp/5004", "tcp/5004")] * 2
    finally:
        await watcher.close()
    bob = await parties[1].report()  # first: the presenter leaving would free the floor
    alice = await parties[0].report()
    assert presenter == alice["participant_id"]
    for call in (alice, bob):  # audio on UDP, content on TCP, in the same call
        assert call["transport"] == "udp/5004" and call["packets_received"] > 0
        assert call["content"]["transport"] == "tcp/5004"
    shared, seen = alice["content"], bob["content"]
    assert shared["role"] == "presenter" and shared["frames_sent"] > 0
    assert shared["packets_sent"] >= 30 * shared["frames_sent"]  # bursts of tens of packets
    assert shared["refused"] is None and not shared["lost_floor"]
    assert seen["role"] == "receiver" and seen["presenter"] == presenter
    assert 0 < seen["frames_received"] <= shared["frames_sent"]
    assert seen["packets_received"] >= 30 * seen["frames_received"] - 30
    assert shared["time_to_first_frame_ms"] > 0 and seen["time_to_first_frame_ms"] > 0
    assert await _cloud_metric(stack, "granted") == granted + 1


async def test_two_presenters_race_and_exactly_one_holds_the_floor(
        stack: Stack, tmp_path: Path) -> None:
    meeting, watcher = _meeting("race"), await stack.register("watcher")
    granted, content = await _cloud_metric(stack, "granted"), await _content_out(stack)
    try:
        parties = [await _call(stack, tmp_path, name, meeting, "--share")
                   for name in ("alice", "bob")]
        presenter = await _presenting(stack, watcher, meeting, 2, content)
    finally:
        await watcher.close()
    calls = await hang_up_all(parties)
    roles = sorted(call["content"]["role"] for call in calls)
    assert roles == ["presenter", "receiver"]
    loser = next(call["content"] for call in calls if call["content"]["role"] == "receiver")
    assert loser["refused"].startswith("floor_held: ") and presenter in loser["refused"]
    assert loser["frames_received"] > 0  # the loser watches the winner's screen
    assert await _cloud_metric(stack, "granted") == granted + 1


async def test_the_presenter_hanging_up_frees_the_floor_and_it_is_announced(
        stack: Stack, tmp_path: Path) -> None:
    meeting, watcher = _meeting("freed"), await stack.register("watcher")
    freed, content = await _cloud_metric(stack, "freed"), await _content_out(stack)
    try:
        alice = await _call(stack, tmp_path, "alice", meeting, "--share")
        bob = await _call(stack, tmp_path, "bob", meeting)
        await _presenting(stack, watcher, meeting, 2, content)
        assert (await alice.report())["content"]["role"] == "presenter"

        async def free() -> bool:
            return (await watcher.meeting(meeting)).presenter is None

        await until_async(free, "the floor freed when its presenter left", timeout_s=30)
        await until_async(lambda: _cloud_metric_is(stack, "freed", freed + 1),
                          "floor.freed counted")
    finally:
        await watcher.close()
    [seen] = await hang_up_all([bob])
    # bob heard floor.freed on its events: it knows of no presenter any more
    assert seen["content"]["presenter"] is None and seen["content"]["frames_received"] > 0


async def _cloud_metric_is(stack: Stack, kind: str, value: float) -> bool:
    return await _cloud_metric(stack, kind) == value


async def test_a_room_device_cannot_share_and_says_why(stack: Stack, tmp_path: Path) -> None:
    """FNR limitations: rooms send media over UDP only; content needs TCP. The call goes on
    with audio and exits 0; its report says why there was no screen sharing."""
    room = await _call(stack, tmp_path, "room", _meeting("room"), "--share", profile="room",
                       seconds=2)
    call = await room.report(hang_up=False)
    assert call["transport"] == "udp/5004"
    assert call["content"]["role"] == "none"
    assert call["content"]["refused"] == (
        "room devices cannot present or receive shared content: content travels over TCP, TLS"
        " or an HTTP proxy, and room devices send media over UDP only; share from a desktop"
        " or mobile client")


async def test_the_presenter_killed_frees_the_floor_within_the_consent_timeout(
        tmp_path: Path) -> None:
    """A presenter that crashes never says so. Its legs stop answering the node's consent
    (RFC 7675 §5.1, here shortened to 3 s, the parties checking every second): the node
    reports ``consent_expired`` and the cloud frees the floor and announces it, while the
    participant is still in the meeting (its leg is freed only after the leg timeout,
    90 s): nobody waits for that to present."""
    async with running_stack([NodeSpec("node-a", "eu", 0, ("--consent-s", "3"))],
                             state_dir=tmp_path / "stack",
                             cloud_args=["--probe-ttl-s", "600"]) as stack:
        watcher = await stack.register("watcher")
        try:
            # consent checks every second (0.8-1.2 s), well inside the node's 3 s
            alice = await _call(stack, tmp_path, "alice", "killed", "--share",
                                "--keepalive-s", "1")
            bob = await _call(stack, tmp_path, "bob", "killed", "--keepalive-s", "1")
            presenter = await _presenting(stack, watcher, "killed", 2)
            alice.proc.kill()  # SIGKILL: no leave, no release

            async def freed() -> bool:
                return (await watcher.meeting("killed")).presenter is None

            await until_async(freed, "the floor freed after the presenter's consent expired",
                              timeout_s=60)
            view = await watcher.meeting("killed")
            assert presenter in {p.id for p in view.participants}  # not left: consent lost
            await until_async(lambda: _cloud_metric_is(stack, "freed", 1), "floor.freed counted")
        finally:
            await watcher.close()
        [seen] = await hang_up_all([bob])
        assert seen["content"]["presenter"] is None  # bob heard floor.freed
        assert seen["content"]["frames_received"] > 0
        await alice.ended()
