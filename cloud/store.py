"""The cloud's state behind one interface; :class:`MemoryStore` is the default backend.

Every method is async so that a networked backend (Redis) fits the same
interface.  Reachability reports expire ``ttl`` seconds after they are stored
(seed: "The probing data cache expiry is set to 2 hours.").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from wire.models import CallMetrics, Event, ReachabilityReport, StoredReachability


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device_id: str
    org: str
    name: str
    profile: str
    generation: int


@dataclass(frozen=True, slots=True)
class ParticipantRecord:
    id: str
    device_id: str
    node_id: str
    ssrc: int
    leg_id: str
    rung: str | None = None


@dataclass(frozen=True, slots=True)
class CascadeRecord:
    """A cascade leg of a meeting: ``from_node`` opened it to ``to_node``."""

    leg_id: str
    from_node: str
    to_node: str


@dataclass(frozen=True, slots=True)
class MeetingRecord:
    id: str
    org: str
    title: str
    created_at: float
    participants: tuple[ParticipantRecord, ...] = field(default=())
    cascades: tuple[CascadeRecord, ...] = field(default=())

    def node_ids(self) -> set[str]:
        return {p.node_id for p in self.participants}


class Store(Protocol):
    """What the cloud keeps; one instance per replica, shared state behind it."""

    async def ping(self) -> bool: ...
    async def put_device(self, device: DeviceRecord) -> None: ...
    async def get_device(self, device_id: str) -> DeviceRecord | None: ...
    async def count_devices(self) -> int: ...
    async def list_device_ids(self) -> list[str]: ...
    async def put_reachability(
        self, device_id: str, report: ReachabilityReport, ttl_s: int
    ) -> StoredReachability: ...
    async def get_reachability(self, device_id: str) -> StoredReachability | None: ...
    async def count_reports(self) -> int: ...
    async def put_meeting(self, meeting: MeetingRecord) -> None: ...
    async def get_meeting(self, meeting_id: str) -> MeetingRecord | None: ...
    async def list_meetings(self) -> list[MeetingRecord]: ...
    async def add_call_metrics(self, org: str, metrics: CallMetrics) -> None: ...
    async def call_metrics(self) -> list[CallMetrics]: ...
    async def publish(self, device_ids: Iterable[str], event: Event) -> None: ...
    def subscribe(self, device_id: str) -> AsyncIterator[Event]: ...
    def meeting_lock(self, meeting_id: str) -> AbstractAsyncContextManager[None]: ...
    async def close(self) -> None: ...


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class MemoryStore:
    """State in this process: the embedded, single-replica backend."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._devices: dict[str, DeviceRecord] = {}
        self._reports: dict[str, StoredReachability] = {}
        self._meetings: dict[str, MeetingRecord] = {}
        self._calls: list[CallMetrics] = []
        self._subscribers: dict[str, set[asyncio.Queue[Event]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def meeting_lock(self, meeting_id: str) -> asyncio.Lock:
        """Joins, leaves and reassignments of one meeting run one at a time."""
        return self._locks.setdefault(meeting_id, asyncio.Lock())

    async def ping(self) -> bool:
        return True

    async def put_device(self, device: DeviceRecord) -> None:
        self._devices[device.device_id] = device

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        return self._devices.get(device_id)

    async def count_devices(self) -> int:
        return len(self._devices)

    async def list_device_ids(self) -> list[str]:
        return list(self._devices)

    async def put_reachability(
        self, device_id: str, report: ReachabilityReport, ttl_s: int
    ) -> StoredReachability:
        now = self._clock()
        stored = StoredReachability(
            device_id=device_id, report=report, stored_at=_dt(now), expires_at=_dt(now + ttl_s)
        )
        self._reports[device_id] = stored
        return stored

    async def get_reachability(self, device_id: str) -> StoredReachability | None:
        stored = self._reports.get(device_id)
        if stored is not None and stored.expires_at.timestamp() <= self._clock():
            del self._reports[device_id]  # expired reports are gone
            return None
        return stored

    async def count_reports(self) -> int:
        now = self._clock()
        return sum(1 for r in self._reports.values() if r.expires_at.timestamp() > now)

    async def put_meeting(self, meeting: MeetingRecord) -> None:
        self._meetings[meeting.id] = meeting

    async def get_meeting(self, meeting_id: str) -> MeetingRecord | None:
        return self._meetings.get(meeting_id)

    async def list_meetings(self) -> list[MeetingRecord]:
        return list(self._meetings.values())

    async def add_call_metrics(self, org: str, metrics: CallMetrics) -> None:
        self._calls.append(metrics)

    async def call_metrics(self) -> list[CallMetrics]:
        return list(self._calls)

    async def publish(self, device_ids: Iterable[str], event: Event) -> None:
        for device_id in device_ids:
            for queue in self._subscribers.get(device_id, ()):
                queue.put_nowait(event)

    async def subscribe(self, device_id: str) -> AsyncIterator[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._subscribers.setdefault(device_id, set()).add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers[device_id].discard(queue)

    async def close(self) -> None:
        self._subscribers.clear()


def with_participant(meeting: MeetingRecord, participant: ParticipantRecord) -> MeetingRecord:
    return replace(meeting, participants=(*meeting.participants, participant))


def without_participant(meeting: MeetingRecord, participant_id: str) -> MeetingRecord:
    kept = tuple(p for p in meeting.participants if p.id != participant_id)
    return replace(meeting, participants=kept)


def open_store(url: str) -> Store:
    """The backend named by ``PINHOLE_STORE``: ``memory`` or ``redis://host:port/db``."""
    if url in ("", "memory"):
        return MemoryStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from cloud.redis_store import RedisStore

        return RedisStore(url)
    raise ValueError(f"unsupported store {url!r}: use 'memory' or redis://host:port/db")
