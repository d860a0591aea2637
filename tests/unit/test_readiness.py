"""cloud.readiness.StoreWatch: backoff steps, one log line each, ready again (no sockets)."""

from __future__ import annotations

import logging

import pytest

from cloud.readiness import StoreWatch
from cloud.store import MemoryStore


class FlakyStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.up = False

    async def ping(self) -> bool:
        return self.up


async def test_backoff_doubles_to_the_ceiling_then_ready(caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore()
    watch = StoreWatch(store, "redis://x", first_s=0.5, max_s=4.0, check_s=5.0)
    with caplog.at_level(logging.INFO, logger="cloud.readiness"):
        delays = [await watch.step() for _ in range(6)]
        assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
        assert not watch.ready and not watch.ready_event.is_set() and watch.checked.is_set()
        store.up = True
        assert await watch.step() == 5.0
        assert watch.ready and watch.ready_event.is_set()
        assert await watch.step() == 5.0  # no line while all is well
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 7  # one per failed attempt, one when it answers again
    assert "unreachable (attempt 6)" in lines[5] and "answers again" in lines[6]
