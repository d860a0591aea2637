"""Loss across a failover, as the clients and the operator's console report it.

Defect: after a failover each side got 465 or 466 of 500 packets, but the console showed
loss 0.0 %: each leg counted loss on its own (RFC 3550 §6.4.1 per leg), and the new leg
sent from sequence number 0 again, so the packets lost while media moved were counted
nowhere. Now a participant's statistics run across its legs: the loss a client reports
(in-call, shown live, and at the end) counts exactly the other side's packets it never
got, between the first and the last one it did get (RFC 3550 §A.3).

Model: ``test_failover.py``'s hung node (SIGSTOP node-a mid-call; media comes back on
node-b). The verdicts are counts, not timings.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lab.stack import NodeSpec, Stack, running_stack
from wire.tls import client_context

pytestmark = pytest.mark.slow

NODES = (NodeSpec("node-a", "eu", 0), NodeSpec("node-b", "us", 20))
SECONDS = 12.0


async def _call(stack: Stack, name: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client", "--stack", str(stack.state_dir / "stack.json"),
        "--no-cache", "--name", name, "--json", "call", "--meeting", "lossy", "--create",
        "--seconds", str(SECONDS),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), SECONDS + 60)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


async def _state(stack: Stack) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(
            stack.cloud_url + "/v1/console/state", ssl=client_context(stack.ca_file),
            headers={"Authorization": f"Bearer {stack.operator_token}"}) as response:
        assert response.status == 200
        state: dict[str, Any] = await response.json()
        return state


def _people(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for m in state["meetings"] if m["id"] == "lossy" for p in m["participants"]]


async def _until(stack: Stack, check: Callable[[list[dict[str, Any]]], bool],
                 timeout_s: float) -> list[dict[str, Any]]:
    """The meeting's participants as the console shows them, once ``check`` holds."""
    for _ in range(int(timeout_s / 0.2)):
        people = _people(await _state(stack))
        if check(people):
            return people
        await asyncio.sleep(0.2)
    raise AssertionError(f"not seen within {timeout_s} s: {people}")


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(NODES, state_dir=tmp_path) as running:
        yield running


async def test_packets_lost_in_a_failover_count_as_loss(stack: Stack) -> None:
    calls = [asyncio.create_task(_call(stack, name)) for name in ("alice", "bob")]
    try:
        # both in the meeting, media on node-a, their first in-call reports in
        people = await _until(stack, lambda people: len(people) == 2 and all(
            p["rung"] and p["loss"] is not None for p in people), 30.0)
        assert {p["node"] for p in people} == {"node-a"}
        stack.signal("node-a", signal.SIGSTOP)
        try:
            # live: once both are on node-b, the in-call reports count the move's losses
            people = await _until(stack, lambda people: bool(people) and all(
                p["node"] == "node-b" and p["loss"] for p in people), SECONDS)
            results = await asyncio.gather(*calls)
        finally:
            stack.signal("node-a", signal.SIGCONT)
    finally:
        for call in calls:
            if not call.done():
                call.cancel()
    assert all(0 < p["loss"] < 1 for p in people)
    for me, other in (results, results[::-1]):
        assert [leg["node"] for leg in me["legs"]] == ["node-a", "node-b"]
        lost, expected = me["packets_lost"], me["packets_expected"]
        # every packet of the other side's sequence, first heard to last, was either
        # received or lost: the ones lost during the move are counted now
        assert lost > 0 and expected - lost == me["packets_received"]
        assert me["loss"] == pytest.approx(lost / expected, abs=0.001)  # printed rounded
        assert expected <= other["packets_sent"]  # no more expected than was sent
        assert me["packets_received"] < other["packets_sent"]
    # the end-of-call reports, as the console shows ended calls (by the rung each call ended
    # on: both on udp/5004 on a quiet machine, but with every core busy udp/5004 once held
    # one of the two, and a move may end on another rung): each rung's mean loss above 0
    ended = (await _state(stack))["calls"]
    assert sorted(ended) == sorted({r["transport"] for r in results}), (ended, results)
    assert sum(q["calls"] for q in ended.values()) == 2, ended
    assert all(q["loss"] > 0 for q in ended.values()), ended
