"""HAProxy in front of cloud replicas: a hung replica (SIGSTOP) is drained, calls go on.

A killed replica refuses connections and any balancer skips it; a hung one still
accepts TCP (the kernel completes the handshake into its backlog) and then says
nothing, which only a health check notices. Here ``cloud-1`` is SIGSTOPped behind
the lab stack's HAProxy (:mod:`lab.haproxy`): its ``/readyz`` check times out,
HAProxy marks it down, new connections go to ``cloud-2`` only, and new joins and a
whole two-party call succeed; after SIGCONT its checks pass again and it is back.
The seconds from SIGSTOP to "drained" are printed (docs/design.md records them); the
guard below only catches a hang.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from client.api import CloudApi
from client.errors import ApiError
from lab import haproxy
from lab.stack import NodeSpec, Stack, running_stack
from tests.integration.calls import UNTIL_HUNG_UP_S, Party, hang_up_all, media_between
from tests.prereqs import require_tool
from tests.waiting import HANG_S, until_async
from wire.address import Address
from wire.models import ProbeResult, ReachabilityReport
from wire.transports import RungName

pytestmark = [pytest.mark.redis, pytest.mark.slow]

NODES = (NodeSpec("node-a", "eu", 0),)


def test_haproxy_accepts_the_configuration_the_stack_writes(tmp_path: Path) -> None:
    """``haproxy -c`` (the real parser) on what :func:`lab.haproxy.config` writes."""
    binary = require_tool("haproxy")
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(haproxy.config(
        Address("127.0.0.1", 8443),
        [haproxy.Replica("cloud-1", Address("127.0.0.1", 9001)),
         haproxy.Replica("cloud-2", Address("127.0.0.1", 9002))],
        Address("127.0.0.1", 9100)))
    checked = subprocess.run([binary, "-c", "-f", str(conf)], capture_output=True,
                             text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "[WARNING]" not in checked.stdout + checked.stderr


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    require_tool("redis-server")
    require_tool("haproxy")
    async with running_stack(NODES, state_dir=tmp_path, store="redis", replicas=2) as running:
        yield running


async def _states(stack: Stack) -> dict[str, str]:
    assert stack.balancer_stats is not None
    return await haproxy.server_states(stack.balancer_stats)


async def _state_is(stack: Stack, name: str, prefix: str) -> bool:
    return (await _states(stack)).get(name, "").startswith(prefix)


async def _join_once(stack: Stack, token: str) -> None:
    """Create a meeting and join it on a connection of its own (HAProxy balances
    connections, not requests: a client that kept one would stay on one replica)."""
    api = stack.api()
    api.token = token
    try:
        async with asyncio.timeout(10):
            meeting = await api.create_meeting(title="while one replica hangs")
            await api.join(meeting.id)
    finally:
        await api.close()


async def test_a_hung_replica_is_drained_and_calls_go_on(stack: Stack) -> None:
    await until_async(lambda: _state_is(stack, "cloud-1", "UP"), "cloud-1 checked up")
    await until_async(lambda: _state_is(stack, "cloud-2", "UP"), "cloud-2 checked up")
    device: CloudApi = await stack.register("joiner")
    await device.put_reachability(ReachabilityReport(results=[
        ProbeResult(node_id="node-a", rung=RungName.UDP_5004, reachable=True, rtt_ms=1.0)]))
    assert device.token is not None
    token = device.token
    await device.close()
    hung_at = time.monotonic()
    stack.signal("cloud-1", signal.SIGSTOP)
    try:
        await until_async(lambda: _state_is(stack, "cloud-1", "DOWN"), "cloud-1 drained",
                          poll_s=0.05)
        drained_s = time.monotonic() - hung_at

        # the node's channel may still be leaving cloud-1: a join sent to it meanwhile
        # waits out the allocation timeout and is refused cleanly (503), then one succeeds
        async def joins() -> bool:
            try:
                await _join_once(stack, token)
            except (ApiError, OSError, TimeoutError):
                return False
            return True

        await until_async(joins, "a join through the replica left")
        joins_back_s = time.monotonic() - hung_at
        for _ in range(6):  # each on a new connection: none reaches the hung replica
            await _join_once(stack, token)
        parties = [await Party.start(stack, "--no-cache", "--name", who, "--json", "call",
                                     "--meeting", "while-hung", "--create", "--seconds",
                                     str(UNTIL_HUNG_UP_S)) for who in ("alice", "bob")]
        await media_between(stack, "while-hung")
        results = await hang_up_all(parties)
    finally:
        stack.signal("cloud-1", signal.SIGCONT)
    for result in results:
        assert result["packets_received"] > 0, result
    await until_async(lambda: _state_is(stack, "cloud-1", "UP"), "cloud-1 back after SIGCONT")
    print(json.dumps({"drained_s": round(drained_s, 2), "joins_back_s": round(joins_back_s, 2),
                      "drain_bound_s": haproxy.Checks().drain_bound_s}))
    assert drained_s < HANG_S
