"""The cloud's state behind one interface; :class:`MemoryStore` is the default backend.

Every method is async so that a networked backend (Redis) fits the same
interface.  Reachability reports expire ``ttl`` seconds after they are stored
(seed: "The probing data cache expiry is set to 2 hours."). Backends are opened
by :func:`cloud.store_factory.open_store`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Final, Protocol

from cloud import floor as floor_rules
from cloud.floor import Floor
from cloud.node_bus import NodeBus
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
    #: a WebRTC endpoint's: its keys came from DTLS with its node, so it cannot be moved
    #: to another node by the cloud alone; it offers again (``media.reoffer``)
    webrtc: bool = False
    #: its content (screen sharing) leg on ``node_id``, once it opened one, and its rung
    content_leg_id: str | None = None
    content_rung: str | None = None


@dataclass(frozen=True, slots=True)
class CascadeRecord:
    """A cascade leg of a meeting: ``from_node`` opened it to ``to_node``."""

    leg_id: str
    from_node: str
    to_node: str
    #: it carries the meeting's content (screen sharing) between the two nodes' content
    #: legs, not its audio and video
    content: bool = False


@dataclass(frozen=True, slots=True)
class MeetingRecord:
    id: str
    org: str
    title: str
    created_at: float
    participants: tuple[ParticipantRecord, ...] = field(default=())
    cascades: tuple[CascadeRecord, ...] = field(default=())
    ended_at: float | None = None  # when its last participant left
    floor: Floor | None = None  # who presents content (cloud.floor)
    private: bool = False  # all media on the org's clusters (cloud.assignment.Scope)

    def node_ids(self) -> set[str]:
        return {p.node_id for p in self.participants}

    def idle_since(self) -> float | None:
        """Since when nobody is in it (None while someone is): the retention clock."""
        if self.participants:
            return None
        return self.ended_at if self.ended_at is not None else self.created_at


@dataclass(frozen=True, slots=True)
class CallTotals:
    """End-of-call reports of one org over one transport, summed: kept when reports go."""

    calls: int = 0
    duration_s: float = 0.0
    loss: float = 0.0  # sum of loss fractions (mean = loss / calls)
    jitter_ms: float = 0.0  # sum
    rtt_ms: float = 0.0  # sum over the calls that measured an RTT
    rtt_calls: int = 0

    def plus(self, m: CallMetrics) -> CallTotals:
        return CallTotals(
            self.calls + 1, self.duration_s + m.duration_s, self.loss + m.loss,
            self.jitter_ms + m.jitter_ms, self.rtt_ms + (m.rtt_ms or 0.0),
            self.rtt_calls + (m.rtt_ms is not None))


@dataclass(frozen=True, slots=True)
class Retention:
    """How much the store keeps of what only grows: end-of-call reports."""

    max_recent_calls: int = 1000  # individual reports kept (the newest)
    calls_s: float = 86400.0  # and none older than this; totals are kept for good


DEFAULT_RETENTION: Final = Retention()


class Store(Protocol):
    """What the cloud keeps; one instance per replica, shared state behind it."""

    #: device event subscriptions lost with the store (each made again), events delivered
    #: from a device's event log after a subscription was (again) in place, and the
    #: times a log had already dropped events its reader had not delivered (Redis only)
    subscriptions_lost: int
    events_replayed: int
    event_gaps: int

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
    async def delete_meeting(self, meeting_id: str) -> None: ...
    async def add_call_metrics(self, org: str, metrics: CallMetrics) -> None: ...
    async def call_metrics(self) -> list[CallMetrics]: ...
    async def call_totals(self) -> dict[tuple[str, str], CallTotals]: ...
    async def publish(self, device_ids: Iterable[str], event: Event) -> None: ...
    def subscribe(self, device_id: str) -> AsyncIterator[Event]: ...
    async def put_console_session(self, key: str, expires_at: float, ttl_s: int) -> None:
        """Keep an operator's console login (``key``: a hash of its id) for ``ttl_s``;
        ``expires_at`` is the cloud's clock reading it ends at."""
        ...
    async def console_session(self, key: str) -> float | None:
        """When the console login ``key`` ends; ``None`` once it was ended or dropped."""
        ...
    async def end_console_session(self, key: str) -> None: ...
    def meeting_lock(self, meeting_id: str, device_id: str | None = None
                     ) -> AbstractAsyncContextManager[None]:
        """Serialises changes to one meeting. ``device_id``: the device acting, whose
        record and report a backend may read with the lock (Redis does)."""
        ...
    def node_bus(self, key: bytes) -> NodeBus | None:
        """How replicas sharing this store share their nodes, its pub/sub sealed with
        ``key``; ``None`` for a store of one replica."""
        ...
    async def close(self) -> None: ...


EVENT_BACKLOG: Final = 256  # events queued for one WebSocket that does not keep up
MAX_CONSOLE_SESSIONS: Final = 1000  # operator logins kept in memory; the oldest go first


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class MemoryStore:
    """State in this process: the embedded, single-replica backend."""

    def __init__(self, clock: Callable[[], float] = time.time,
                 retention: Retention = DEFAULT_RETENTION) -> None:
        self._clock = clock
        self._retention = retention
        self._devices: dict[str, DeviceRecord] = {}
        self._reports: dict[str, StoredReachability] = {}
        self._meetings: dict[str, MeetingRecord] = {}
        self._calls: deque[tuple[float, CallMetrics]] = deque(
            maxlen=retention.max_recent_calls)
        self._totals: dict[tuple[str, str], CallTotals] = {}
        self._subscribers: dict[str, set[asyncio.Queue[Event]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._sessions: dict[str, tuple[float, float]] = {}  # key -> ends at, dropped at
        self.subscriptions_lost = self.events_replayed = self.event_gaps = 0  # none here

    def meeting_lock(self, meeting_id: str, device_id: str | None = None) -> asyncio.Lock:
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

    async def delete_meeting(self, meeting_id: str) -> None:
        self._meetings.pop(meeting_id, None)
        self._locks.pop(meeting_id, None)  # a holder keeps its own reference

    async def add_call_metrics(self, org: str, metrics: CallMetrics) -> None:
        key = (org, metrics.transport)
        self._totals[key] = self._totals.get(key, CallTotals()).plus(metrics)
        self._calls.append((self._clock(), metrics))  # the oldest falls off past the bound
        self._forget_calls()

    def _forget_calls(self) -> None:
        oldest = self._clock() - self._retention.calls_s
        while self._calls and self._calls[0][0] < oldest:
            self._calls.popleft()

    async def call_metrics(self) -> list[CallMetrics]:
        self._forget_calls()
        return [m for _, m in self._calls]

    async def call_totals(self) -> dict[tuple[str, str], CallTotals]:
        return dict(self._totals)

    async def publish(self, device_ids: Iterable[str], event: Event) -> None:
        for device_id in device_ids:
            for queue in self._subscribers.get(device_id, ()):
                with contextlib.suppress(asyncio.QueueFull):  # a reader that stopped reading
                    queue.put_nowait(event)

    async def subscribe(self, device_id: str) -> AsyncIterator[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(EVENT_BACKLOG)
        self._subscribers.setdefault(device_id, set()).add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            queues = self._subscribers.get(device_id, set())
            queues.discard(queue)
            if not queues:
                self._subscribers.pop(device_id, None)

    async def put_console_session(self, key: str, expires_at: float, ttl_s: int) -> None:
        now = self._clock()
        self._sessions = {k: v for k, v in self._sessions.items() if v[1] >= now}
        while len(self._sessions) >= MAX_CONSOLE_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        self._sessions[key] = (expires_at, now + ttl_s)

    async def console_session(self, key: str) -> float | None:
        found = self._sessions.get(key)
        return None if found is None or found[1] < self._clock() else found[0]

    async def end_console_session(self, key: str) -> None:
        self._sessions.pop(key, None)

    def node_bus(self, key: bytes) -> None:
        """One process, one replica: no nodes to share."""
        return None

    async def close(self) -> None:
        self._subscribers.clear()


def with_participant(meeting: MeetingRecord, participant: ParticipantRecord) -> MeetingRecord:
    return replace(meeting, participants=(*meeting.participants, participant))


def without_participant(meeting: MeetingRecord, participant_id: str) -> MeetingRecord:
    """The meeting without the participant; the floor freed if it presented (its callers
    announce ``floor.freed``: :func:`cloud.sharing.after_leaving`)."""
    kept = tuple(p for p in meeting.participants if p.id != participant_id)
    return replace(meeting, participants=kept,
                   floor=floor_rules.leave(meeting.floor, participant_id).floor)
