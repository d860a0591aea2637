"""Waiting for what a test means, not for a length of time.

A verdict read after ``asyncio.sleep(0.2)`` depends on the machine: on a busy one the
packet is still in flight and the test fails. :func:`until` waits for the condition
itself; its timeout only guards against a hang and is never a margin the verdict hangs on.
A negative verdict ("b received nothing") waits for a later event that proves the earlier
one was handled (the node counted the drop, a marker packet arrived after it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

# far above any real delay, even on a loaded machine: reaching it means it never happened
HANG_S = 30.0


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = HANG_S,
                poll_s: float = 0.005) -> None:
    """Return as soon as ``predicate()`` holds; fail naming ``what`` if it never does."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {timeout_s:g} s: {what}")
        await asyncio.sleep(poll_s)


async def until_async(check: Callable[[], Awaitable[bool]], what: str,
                      timeout_s: float = HANG_S, poll_s: float = 0.02) -> None:
    """:func:`until` for a condition read by awaiting (an HTTP metric, a store)."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {timeout_s:g} s: {what}")
        await asyncio.sleep(poll_s)


def until_sync(predicate: Callable[[], bool], what: str, timeout_s: float = HANG_S,
               poll_s: float = 0.005) -> None:
    """:func:`until` for code outside an event loop (threads, subprocesses)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {timeout_s:g} s: {what}")
        time.sleep(poll_s)


class FakeClock:
    """A monotonic clock the test moves: inject it where a service takes ``clock``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now
