"""``Device.call`` is the call ``pinhole call`` makes, for any program to make.

Defect: the whole call (register, discover, join, connect, talk, leave, report,
the timings) lived in a 134-line CLI function, so a test or another program
could only get a call's report by running the CLI and parsing its JSON. Here
two devices call one meeting on a loopback stack through the library alone,
and each report carries what ``pinhole call --json`` prints (its keys are the
ones docs/architecture.md documents, "``pinhole --json`` shapes").
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from client import CallOptions, CallReport, CallSecond, Device, Enrollment
from lab.pki import ORG
from lab.stack import NodeSpec, Stack, running_stack
from tests.integration.test_boundary import _documented_keys

# one stack for the module (:func:`stack`): every test runs on the module's event loop
pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One stack for the module's tests: each has its own devices and meeting
    (:func:`_meeting`), and none changes the cloud or its node."""
    async with running_stack([NodeSpec("node-a", "eu", 0)],
                             state_dir=tmp_path_factory.mktemp("device-call")) as running:
        yield running


def _meeting(name: str) -> str:
    """A meeting id of this test's own on the module's stack."""
    return f"{name}-{secrets.token_hex(4)}"


async def _call(stack: Stack, meeting: str, name: str, seconds: list[CallSecond]) -> CallReport:
    device = Device(stack.api())
    try:
        return await device.call(meeting, CallOptions(
            enrollment=Enrollment(ORG, stack.enrollment_key, name), create=True,
            seconds=1.0, on_second=seconds.append))
    finally:
        await device.close()
        await device.api.close()


async def test_two_devices_call_through_the_library(stack: Stack) -> None:
    seconds: list[CallSecond] = []
    meeting = _meeting("standup")
    alice, bob = await asyncio.gather(_call(stack, meeting, "alice", seconds),
                                      _call(stack, meeting, "bob", []))
    for report in (alice, bob):
        assert report.meeting_id == meeting and report.node == report.joined_node == "node-a"
        assert report.transport == "udp/5004" and report.plan[0] == "udp/5004"
        assert report.packets_sent > 0 and report.bytes_sent > report.packets_sent
        assert [leg.node for leg in report.legs] == ["node-a"]
        assert report.attempts and report.attempts[-1].ok
        assert report.timings.report == "probe"
        assert report.timings.join_ms is not None and report.timings.connect_ms is not None
        assert set(report.as_dict()) == _documented_keys("call")
    # both talked for a second at once, so each heard the other
    assert alice.packets_received > 0 and bob.packets_received > 0
    assert alice.timings.first_media_at is not None
    assert alice.participant_id != bob.participant_id
    assert seconds and seconds[0].second == 0 and seconds[0].rung == "udp/5004"
    with pytest.raises(dataclasses.FrozenInstanceError):
        alice.node = "elsewhere"  # type: ignore[misc]


async def test_a_registered_device_calls_without_enrolling_again(stack: Stack) -> None:
    """``enrollment`` None: the device's registration is used as it is."""
    device = Device(stack.api())
    try:
        registered = await device.register(ORG, stack.enrollment_key, "carol")
        report = await device.call(_meeting("retro"), CallOptions(create=True, seconds=0.5,
                                                        live_reports=False))
    finally:
        await device.close()
        await device.api.close()
    assert report.device_id == registered.device_id
    assert report.packets_received == 0  # alone in the meeting
    assert report.timings.first_media_ms is None


async def test_calling_before_registering_says_so(stack: Stack) -> None:
    device = Device(stack.api())
    try:
        with pytest.raises(RuntimeError, match="register first"):
            await device.call(_meeting("standup"))
    finally:
        await device.api.close()
