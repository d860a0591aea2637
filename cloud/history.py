"""The console's event history: a fixed-size ring of what happened, newest first.

Joins, leaves, failovers (with the gap: how long the cloud had not heard from
the failed node when its legs moved), overflows from a full hybrid node,
consent losses, refused joins, and nodes going down and coming back. A
route writes a line with :meth:`History.note` (stamped with the history's
clock), which never waits and never raises: the join's hot path pays an append.

One history per cloud, not per replica: with the Redis store every replica
pushes to one bounded Redis list (``LPUSH`` + ``LTRIM`` in one pipeline, from
a background flusher), so the console of any replica shows the same events.
The memory store's cloud is a single replica: a ``deque`` is its ring.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Final, Literal, Protocol, get_args

from cloud.redis_errors import raise_if_cancelling, redis_failures

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger(__name__)

HISTORY_SIZE: Final = 200  # events kept; the oldest goes when a new one comes
HISTORY_KEY: Final = "pinhole:history"
RETRY_S: Final = 1.0  # after a failed flush

Kind = Literal["joined", "left", "failover", "overflow", "consent_lost", "refused",
               "node_down", "node_up", "floor"]
KINDS: Final = frozenset(get_args(Kind))


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One line of the history. ``node`` is where it happened (the failed node of a
    failover, the full hybrid node of an overflow); ``to_node`` where the legs went."""

    at: float  # Unix time
    kind: Kind
    text: str
    meeting: str | None = None
    participant: str | None = None
    device: str | None = None
    node: str | None = None
    to_node: str | None = None
    gap_s: float | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: str | bytes) -> HistoryEvent:
        """Parse one stored event; ``ValueError`` when it is not one."""
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("kind") not in KINDS:
            raise ValueError("not a history event")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"not a history event: {exc}") from None


class History(Protocol):
    clock: Callable[[], float]  # Unix time, for the events it notes

    def record(self, event: HistoryEvent) -> None:
        """Keep ``event``; never waits, never raises."""

    def note(self, kind: Kind, text: str, *, meeting: str | None = None,
             participant: str | None = None, device: str | None = None,
             node: str | None = None, to_node: str | None = None,
             gap_s: float | None = None) -> None:
        """One line, stamped now (never waits, never raises)."""
        self.record(HistoryEvent(
            at=self.clock(), kind=kind, text=text, meeting=meeting, participant=participant,
            device=device, node=node, to_node=to_node,
            gap_s=None if gap_s is None else round(gap_s, 2)))

    async def recent(self) -> list[HistoryEvent]:
        """The events kept, newest first."""

    async def run(self) -> None:
        """Until cancelled: whatever the backend does in the background."""

    async def close(self) -> None: ...


class MemoryHistory(History):
    """The ring in this process (one replica)."""

    def __init__(self, size: int = HISTORY_SIZE, clock: Callable[[], float] = time.time
                 ) -> None:
        self.clock = clock
        self._ring: deque[HistoryEvent] = deque(maxlen=size)

    def record(self, event: HistoryEvent) -> None:
        self._ring.appendleft(event)

    async def recent(self) -> list[HistoryEvent]:
        return list(self._ring)

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None


class RedisHistory(History):
    """One ring for every replica: a Redis list trimmed to ``size``.

    Events wait in a bounded local queue until the flusher pushes them (a Redis
    outage drops the oldest and counts them in :attr:`dropped`); until then this
    replica's console shows them from the queue.
    """

    def __init__(self, redis: aioredis.Redis, size: int = HISTORY_SIZE,
                 key: str = HISTORY_KEY, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._redis = redis
        self._size = size
        self._key = key
        self._pending: deque[HistoryEvent] = deque(maxlen=size)
        self._wake = asyncio.Event()
        self.dropped = 0  # events lost to a full queue while Redis did not answer
        self.unreadable = 0  # stored entries that did not parse (skipped)

    def record(self, event: HistoryEvent) -> None:
        if len(self._pending) == self._size:
            self.dropped += 1
        self._pending.append(event)
        self._wake.set()

    async def flush(self) -> None:
        """Push what is queued, oldest first (the newest ends at the list's head)."""
        batch = list(self._pending)
        if not batch:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.lpush(self._key, *(json.dumps(e.as_dict()) for e in batch))
            pipe.ltrim(self._key, 0, self._size - 1)
            await pipe.execute()
        sent = {id(e) for e in batch}  # record() may have appended meanwhile
        while self._pending and id(self._pending[0]) in sent:
            self._pending.popleft()

    async def recent(self) -> list[HistoryEvent]:
        raws = await self._redis.lrange(self._key, 0, self._size - 1)
        stored = []
        for raw in raws:
            try:
                stored.append(HistoryEvent.from_json(raw))
            except ValueError:
                self.unreadable += 1
        # replicas push in batches: order by time, this replica's unflushed ones included
        merged = sorted([*self._pending, *stored], key=lambda e: e.at, reverse=True)
        return merged[:self._size]

    async def run(self) -> None:
        paused = False
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except redis_failures() as exc:
                raise_if_cancelling()
                if not paused:
                    log.warning("event history paused: %s", exc or type(exc).__name__)
                paused = True
                self._wake.set()
                await asyncio.sleep(RETRY_S)
                continue
            if paused:
                log.info("event history resumed")
            paused = False

    async def close(self) -> None:
        try:
            await self.flush()
        except redis_failures():
            raise_if_cancelling()
        await self._redis.aclose()


def open_history(store_url: str, size: int = HISTORY_SIZE,
                 clock: Callable[[], float] = time.time) -> History:
    """The history for a cloud over ``store_url``: shared in Redis, else in memory."""
    if store_url.startswith(("redis://", "rediss://", "unix://")):
        import redis.asyncio as aioredis  # only here: the memory store's cloud never needs it

        pool = aioredis.BlockingConnectionPool.from_url(
            store_url, max_connections=4, timeout=10.0, decode_responses=True)
        return RedisHistory(aioredis.Redis(connection_pool=pool), size, clock=clock)
    return MemoryHistory(size, clock)
