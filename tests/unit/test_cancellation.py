"""A cloud background task ends when cancelled, even when the Redis client eats the cancel.

Pins down the teardown hang of the API tests on the Redis store (3 hangs in ~11 runs,
5-10+ minutes each): redis-py answers a cancellation that lands mid-command with a
``ConnectionError`` (or returns normally), so the registry's sync loop took the
cancellation for a store outage, backed off and ran on; the server's shutdown waited on
it for ever. A fault of a third-party client that cannot be caused on demand, so the
bus here stands in for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

import pytest

from cloud.node_bus import NodeBus
from cloud.registry import NodeRegistry


class CancelEatingBus:
    """``announce`` as redis-py behaves when cancelled mid-command. A second call (the
    loop ran on after the cancel) is counted and ends the task, so the test cannot hang."""

    def __init__(self, swallow: bool) -> None:
        self.swallow = swallow
        self.entered = asyncio.Event()
        self.calls = 0

    async def announce(self, entries: Iterable[dict[str, Any]], ttl_s: float) -> None:
        self.calls += 1
        if self.calls > 1:
            raise asyncio.CancelledError
        self.entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if self.swallow:
                return
            raise ConnectionError("Connection lost") from None

    async def snapshot(self) -> list[dict[str, Any]]:
        return []


@pytest.mark.parametrize("swallow", [False, True], ids=["as-error", "swallowed"])
async def test_the_registry_sync_ends_when_cancelled(swallow: bool) -> None:
    bus = CancelEatingBus(swallow)
    registry = NodeRegistry(heartbeat_s=0.2, misses=3, bus=cast(NodeBus, bus))
    task = asyncio.create_task(registry.run_sync())
    await asyncio.wait_for(bus.entered.wait(), 2)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done and task.cancelled()
    assert bus.calls == 1  # it stopped at the cancel, not after another round
