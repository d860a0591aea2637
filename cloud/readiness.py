"""Is the store there? A watch with backoff, one log line per step, and ``/readyz``.

Before: with ``--store redis://127.0.0.1:1/0`` the cloud said "listening" and
then wrote a full traceback every 2.5 s. Now the watch pings the store; while
it does not answer, the cloud is *not ready* (``/readyz`` 503) and the watch
logs one line per attempt, waiting twice as long each time (up to
``max_s``); when it answers again, one line says so. At start-up the cloud
says "listening" (and writes its state file) only once the watch is ready.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from cloud.redis_errors import raise_if_cancelling
from cloud.store import Store

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class StoreWatch:
    def __init__(self, store: Store, name: str, *, first_s: float = 0.5, max_s: float = 30.0,
                 check_s: float = 5.0, ping_timeout_s: float = 2.0,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.store = store
        self.name = name
        self.first_s, self.max_s, self.check_s = first_s, max_s, check_s
        self.ping_timeout_s = ping_timeout_s
        self._sleep = sleep
        self.ready = False
        self.checked = asyncio.Event()  # set after the first ping, either way
        self.ready_event = asyncio.Event()  # set while the store answers
        self.failures = 0  # consecutive failed pings

    async def ping(self) -> bool:
        try:
            return await asyncio.wait_for(self.store.ping(), self.ping_timeout_s)
        except (OSError, TimeoutError):
            raise_if_cancelling()
            return False

    async def step(self) -> float:
        """One ping; the seconds to wait before the next one."""
        ok = await self.ping()
        if ok:
            if not self.ready and self.failures:
                log.info("store %s answers again: ready", self.name)
            self.ready, self.failures = True, 0
            self.ready_event.set()
            self.checked.set()
            return self.check_s
        self.ready = False
        self.ready_event.clear()
        delay = min(self.max_s, self.first_s * 2.0 ** self.failures)
        self.failures += 1
        log.warning("store %s unreachable (attempt %d): not ready; retrying in %.1f s",
                    self.name, self.failures, delay)
        self.checked.set()
        return delay

    async def run(self) -> None:
        while True:
            delay = await self.step()
            raise_if_cancelling()
            await self._sleep(delay)
