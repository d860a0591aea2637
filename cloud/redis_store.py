"""The Redis backend of :class:`cloud.store.Store`: several cloud replicas, one state.

- Devices, meetings and call metrics are JSON values under ``pinhole:*`` keys.
- A reachability report is a key with a Redis TTL of the probe TTL (seed: "The
  probing data cache expiry is set to 2 hours."): Redis itself makes it gone.
- An operator's console login is a key with a Redis TTL of the login's life;
  logging out deletes it, so a replayed cookie is refused by every replica.
- Events go out with ``PUBLISH pinhole:events:<device>``; every replica's
  ``/v1/events`` WebSocket subscribes to its device's channel, so an event
  raised on one replica reaches a client connected to another. Pub/sub keeps
  nothing for a subscriber that is not there, so each event also goes into
  the device's event log, a stream under the channel's name (its last
  ``EVENT_LOG_LEN`` entries, kept ``EVENT_LOG_TTL_S`` after the last one),
  and the message carries the entry's id: a subscription lost with the store
  is made again and first reads from the log what it missed (``subscribe``).
- Meeting updates take a short Redis lock (``SET NX PX``, with a read of the
  meeting in the same script) so two replicas never interleave a join. While
  this replica holds a meeting's lock nobody else can change the meeting,
  so the value read with the lock (then the one written) answers
  ``get_meeting`` without another round trip until the lock is released.
  Joins on one replica first queue on that replica's own asyncio lock for
  the meeting: only the head of the queue asks Redis, and it polls only
  while another replica holds the lock (a queue that polled Redis every
  10 ms made a busy meeting's joins wait for the poll, not for each other).
- A meeting written while its lock is held is written when the lock is
  released, by the same script that releases it, and only if the lock is
  still ours (a holder whose lock expired gets ``StoreUnavailable`` instead
  of overwriting the next holder's write). Events the holder raises about
  its meeting go out with that script too, after the write: no replica
  hears of a change it cannot read yet. Only the holder's own (the task
  that took the lock, by a context variable): an event another task raises
  meanwhile, about a change it already wrote (a leave, after its own lock),
  goes out at once, never lost with a holder whose lock lapsed.
- ``meeting_lock(meeting_id, device_id)`` also reads the acting device's
  record and reachability report in the lock's script; reads of them while
  the lock is held are answered from it. A join is then two round trips:
  the lock with everything placement reads, and the write, the event and
  the release (it was seven). Both scripts are pipelined on one connection
  of their own (``cloud.redis_scripts``): Redis joins went from 934/s to
  about 3,700/s on one core, 0.72 of the memory store's (``bench/join.py``).
- Meetings are encoded field by field, not with ``dataclasses.asdict``
  (which deep-copies every value: a quarter of a join's write on Redis), and
  a participant as the list of its fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import operator
import secrets
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import asdict, fields
from datetime import UTC, datetime

import redis.asyncio as aioredis

from cloud import redis_sentinel
from cloud.errors import StoreUnavailable
from cloud.floor import Floor
from cloud.node_bus import RedisNodeBus, messages, resubscribing
from cloud.redis_errors import raise_if_cancelling, redis_failures, translated
from cloud.redis_scripts import Script, ScriptRunner
from cloud.redis_sentinel import SentinelClient
from cloud.store import (
    DEFAULT_RETENTION,
    EVENT_BACKLOG,
    CallTotals,
    CascadeRecord,
    DeviceRecord,
    MeetingRecord,
    ParticipantRecord,
    Retention,
)
from wire.models import CallMetrics, Event, ReachabilityReport, StoredReachability

PREFIX = "pinhole:"
#: A device's event log keeps its newest events this long after the last one: far more
#: than a subscription is down while the store answers (a failover's resubscription
#: comes within ``cloud.node_bus.RESUBSCRIBE_MAX_S`` of the new primary)
EVENT_LOG_TTL_S = 60
EVENT_LOG_LEN = EVENT_BACKLOG  # and at least this many of them (``MAXLEN ~``)
MAX_CONNECTIONS = 100  # to Redis per replica; more requests than that wait for one
CONNECTION_WAIT_S = 10.0
LOCK_POLL_S = 0.005  # while another replica holds a meeting's lock
# Take the lock and read the meeting (and the acting device's record and report, when
# KEYS[3] and KEYS[4] are given) in one round trip: {1, meeting, device, report} (a
# missing value is false), or {0}.
_ACQUIRE = ("if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then "
            "return {0} end local out = {1} for i = 2, #KEYS do "
            "out[i] = redis.call('get', KEYS[i]) end return out")
# Delete the lock only if it is still ours: it may have expired and been taken since.
_RELEASE = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
            "return redis.call('del', KEYS[1]) else return 0 end")
# One event (``text``) to one device (``key``: its channel, and its log of the same name):
# appended to the log, which is trimmed and kept EVENT_LOG_TTL_S from now, and published
# as "<its log id> <text>".
_SEND = f"""
local function send(key, text)
  local id = redis.call('xadd', key, 'MAXLEN', '~', {EVENT_LOG_LEN}, '*', 'e', text)
  redis.call('pexpire', key, {EVENT_LOG_TTL_S * 1000})
  redis.call('publish', key, id .. ' ' .. text)
end
"""
# Only if the lock is still ours: write the meeting (ARGV[2] == "1": ARGV[3] under
# KEYS[2], its id ARGV[4] into the set KEYS[3]), send each event (ARGV[i], to the
# next ARGV[i + 1] devices of KEYS[4...]), release: 1; or 0, and nothing done.
_COMMIT = _SEND + """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '1' then
  redis.call('set', KEYS[2], ARGV[3])
  redis.call('sadd', KEYS[3], ARGV[4])
end
local k = 4
for i = 5, #ARGV, 2 do
  for _ = 1, tonumber(ARGV[i + 1]) do
    send(KEYS[k], ARGV[i])
    k = k + 1
  end
end
redis.call('del', KEYS[1])
return 1
"""
# One event to many devices in one command (a pipeline of N commands costs N).
_PUBLISH = _SEND + "for _, key in ipairs(KEYS) do send(key, ARGV[1]) end"
# A participant (and a cascade) is stored as the list of its fields, in field order:
# no key per field to write and parse (a meeting of ten: 17 µs to read as objects of
# named fields, 6 as lists).
_participant_fields = operator.attrgetter(*(f.name for f in fields(ParticipantRecord)))
_cascade_fields = operator.attrgetter(*(f.name for f in fields(CascadeRecord)))

log = logging.getLogger(__name__)


def _entry_id(text: str) -> tuple[int, int]:
    """A stream entry's id, ``<ms>-<seq>``, as numbers that compare in its order."""
    ms, _, seq = text.partition("-")
    return int(ms), int(seq)


def _log(raw: Iterable[tuple[object, object]] | None) -> list[tuple[tuple[int, int], str]]:
    """Entries of a device's log, as its ids and the texts of its events."""
    return [(_entry_id(str(entry)), str(values.get("e", "")) if isinstance(values, dict)
             else "") for entry, values in raw or ()]


def _event(device_id: str, text: str | None) -> Event | None:
    """The event in a message or log entry; a malformed one is logged and skipped (it is
    not the store's: whoever can write to Redis may publish anything)."""
    try:
        return Event.model_validate_json(text or "")
    except ValueError:  # pydantic's ValidationError is one
        log.warning("ignored a malformed event for device %s", device_id)
        return None


def meeting_json(meeting: MeetingRecord) -> str:
    """The stored form of a meeting; ``meeting_from_json`` reads it back."""
    m = meeting
    return json.dumps({
        "id": m.id, "org": m.org, "title": m.title, "created_at": m.created_at,
        "participants": [_participant_fields(p) for p in m.participants],
        "cascades": [_cascade_fields(c) for c in m.cascades],
        "ended_at": m.ended_at,
        "floor": None if m.floor is None else [m.floor.presenter, m.floor.since],
        "private": m.private})


def meeting_from_json(raw: str | bytes) -> MeetingRecord:
    """A stored meeting (its participants as field lists, or as objects: the older form)."""
    data = json.loads(raw)
    return MeetingRecord(
        id=data["id"], org=data["org"], title=data["title"], created_at=data["created_at"],
        participants=tuple(ParticipantRecord(*p) if isinstance(p, list)
                           else ParticipantRecord(**p) for p in data["participants"]),
        cascades=tuple(CascadeRecord(*c) if isinstance(c, list) else CascadeRecord(**c)
                       for c in data.get("cascades", ())),
        ended_at=data.get("ended_at"),
        floor=None if data.get("floor") is None else Floor(*data["floor"]),
        private=bool(data.get("private", False)),
    )


#: The locks the current task (and what it started while holding them) holds.
_HOLDING: contextvars.ContextVar[frozenset[_Held]] = contextvars.ContextVar(
    "pinhole_holding", default=frozenset())


class _Held:
    """A meeting whose lock this replica holds: the value read with the lock (or last
    written), whether it still has to be written, the events that go out with it, and
    the acting device's record and report read with the lock."""

    __slots__ = ("device", "device_id", "dirty", "events", "report", "text")

    def __init__(self, text: str | None, device_id: str | None = None,
                 device: str | None = None, report: str | None = None) -> None:
        self.text = text
        self.dirty = False
        self.events: list[tuple[list[str], str]] = []  # (channels, event JSON)
        self.device_id = device_id
        self.device = device
        self.report = report


class _Queue:
    """This replica's waiters for one meeting's lock."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class RedisStore:
    def __init__(self, url: str, retention: Retention = DEFAULT_RETENTION,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.url = url
        self._retention = retention
        self._sentinel: SentinelClient | None = None
        if url.startswith(redis_sentinel.SCHEME):  # the primary the Sentinels name
            target = redis_sentinel.parse(url)
            self._sentinel = SentinelClient(target, max_connections, CONNECTION_WAIT_S)
            self._redis: aioredis.Redis = self._sentinel.redis
            secret = f":{urllib.parse.quote(target.password, safe='')}@" \
                if target.password else ""
            # host and port come from the Sentinels at each connection
            self._scripts = ScriptRunner(f"redis://{secret}primary/{target.db}",
                                         locate=self._sentinel.primary)
        else:
            # A blocking pool: under a burst, a request waits for a free connection
            # (redis-py's default pool raises "Too many connections": a 500 per join).
            pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=CONNECTION_WAIT_S,
                decode_responses=True)
            self._redis = aioredis.Redis(connection_pool=pool)
            # a join's two scripts skip redis-py's command path (cloud.redis_scripts)
            self._scripts = ScriptRunner(url)
        self._acquire, self._commit = Script(_ACQUIRE), Script(_COMMIT)
        self._release = self._redis.register_script(_RELEASE)
        self._publish = self._redis.register_script(_PUBLISH)
        self._queues: dict[str, _Queue] = {}
        self._held: dict[str, _Held] = {}  # meetings whose lock we hold
        self._acting: dict[str, _Held] = {}  # device id -> the lock that read its records
        self.subscriptions_lost = 0
        self.events_replayed = 0
        self.event_gaps = 0

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (aioredis.RedisError, OSError):
            raise_if_cancelling()
            return False

    # ----------------------------------------------------------------- devices

    @translated
    async def put_device(self, device: DeviceRecord) -> None:
        self._acting.pop(device.device_id, None)  # what a lock read is not current now
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(f"{PREFIX}device:{device.device_id}", json.dumps(asdict(device)))
            pipe.sadd(f"{PREFIX}devices", device.device_id)
            await pipe.execute()

    @translated
    async def get_device(self, device_id: str) -> DeviceRecord | None:
        acting = self._acting.get(device_id)
        raw = acting.device if acting is not None else await self._redis.get(
            f"{PREFIX}device:{device_id}")
        return None if raw is None else DeviceRecord(**json.loads(raw))

    @translated
    async def count_devices(self) -> int:
        return int(await self._redis.scard(f"{PREFIX}devices"))

    @translated
    async def list_device_ids(self) -> list[str]:
        members = await self._redis.smembers(f"{PREFIX}devices")
        return sorted(str(m) for m in members)

    # ----------------------------------------------------------------- reachability

    @translated
    async def put_reachability(
        self, device_id: str, report: ReachabilityReport, ttl_s: int
    ) -> StoredReachability:
        self._acting.pop(device_id, None)  # what a lock read is not current now
        now = time.time()
        stored = StoredReachability(
            device_id=device_id, report=report, stored_at=datetime.fromtimestamp(now, UTC),
            expires_at=datetime.fromtimestamp(now + ttl_s, UTC),
        )
        await self._redis.set(f"{PREFIX}reach:{device_id}", stored.model_dump_json(), ex=ttl_s)
        return stored

    @translated
    async def get_reachability(self, device_id: str) -> StoredReachability | None:
        acting = self._acting.get(device_id)
        raw = acting.report if acting is not None else await self._redis.get(
            f"{PREFIX}reach:{device_id}")
        return None if raw is None else StoredReachability.model_validate_json(raw)

    @translated
    async def count_reports(self) -> int:
        count = 0
        async for _ in self._redis.scan_iter(match=f"{PREFIX}reach:*", count=500):
            count += 1
        return count

    # ----------------------------------------------------------------- meetings

    @translated
    async def put_meeting(self, meeting: MeetingRecord) -> None:
        text = meeting_json(meeting)
        held = self._held.get(meeting.id)
        if held is not None:  # written with the release (or before an event)
            held.text, held.dirty = text, True
            return
        await self._write_meeting(meeting.id, text)

    async def _write_meeting(self, meeting_id: str, text: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(f"{PREFIX}meeting:{meeting_id}", text)
            pipe.sadd(f"{PREFIX}meetings", meeting_id)
            await pipe.execute()

    @translated
    async def get_meeting(self, meeting_id: str) -> MeetingRecord | None:
        held = self._held.get(meeting_id)
        # we hold its lock: nobody else changed it
        raw = held.text if held is not None else await self._redis.get(
            f"{PREFIX}meeting:{meeting_id}")
        return None if raw is None else meeting_from_json(raw)

    @translated
    async def list_meetings(self) -> list[MeetingRecord]:
        ids = sorted(str(m) for m in await self._redis.smembers(f"{PREFIX}meetings"))
        if not ids:
            return []
        raws = await self._redis.mget([f"{PREFIX}meeting:{i}" for i in ids])
        return [meeting_from_json(raw) for raw in raws if raw is not None]

    @contextlib.asynccontextmanager
    async def meeting_lock(self, meeting_id: str, device_id: str | None = None,
                           ttl_ms: int = 10_000) -> AsyncIterator[None]:
        """A lock all replicas respect; it expires by itself if a replica dies holding it.
        With ``device_id``, that device's record and report come with it."""
        queue = self._queues.get(meeting_id)
        if queue is None:
            queue = self._queues[meeting_id] = _Queue()
        queue.users += 1
        try:
            async with queue.lock:  # this replica's joins, in order, without asking Redis
                key, token = f"{PREFIX}lock:meeting:{meeting_id}", secrets.token_hex(8)
                keys = [key, f"{PREFIX}meeting:{meeting_id}"]
                if device_id is not None:
                    keys += [f"{PREFIX}device:{device_id}", f"{PREFIX}reach:{device_id}"]
                try:
                    acquire = self._acquire
                    while not (taken := await self._scripts.run(acquire, keys, [token, ttl_ms]))[0]:  # noqa: ASYNC110
                        await asyncio.sleep(LOCK_POLL_S)  # another replica holds it: short-lived
                except redis_failures() as exc:
                    raise StoreUnavailable(f"the store does not answer ({exc})") from exc
                values = [v or None for v in taken[1:]] + [None, None, None]
                held = self._held[meeting_id] = _Held(values[0], device_id, *values[1:3])
                if device_id is not None:
                    self._acting[device_id] = held
                holding = _HOLDING.set(_HOLDING.get() | {held})
                try:
                    yield
                finally:
                    _HOLDING.reset(holding)
                    del self._held[meeting_id]
                    if device_id is not None and self._acting.get(device_id) is held:
                        del self._acting[device_id]
                    if held.dirty or held.events:
                        await self._commit_and_release(key, token, meeting_id, held)
                    else:
                        # release only our own lock (it may have expired and been taken
                        # since); a store gone meanwhile lets it expire by itself
                        with contextlib.suppress(*redis_failures()):
                            await self._release(keys=[key], args=[token])
        finally:
            queue.users -= 1
            if not queue.users:
                del self._queues[meeting_id]

    async def _commit_and_release(self, key: str, token: str, meeting_id: str,
                                  held: _Held) -> None:
        keys = [key, f"{PREFIX}meeting:{meeting_id}", f"{PREFIX}meetings"]
        write = held.dirty and held.text is not None
        args: list[str | int] = [token, "1" if write else "0", held.text or "", meeting_id]
        for channels, text in held.events:
            keys += channels
            args += [text, len(channels)]
        try:
            ours = await self._scripts.run(self._commit, keys, args)
        except redis_failures() as exc:
            raise StoreUnavailable(f"the store does not answer ({exc})") from exc
        if not ours:
            raise StoreUnavailable(f"the lock of meeting {meeting_id} expired before its "
                                   "change was written; try again")

    # ----------------------------------------------------------------- metrics

    @translated
    async def delete_meeting(self, meeting_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(f"{PREFIX}meeting:{meeting_id}")
            pipe.srem(f"{PREFIX}meetings", meeting_id)
            await pipe.execute()

    @translated
    async def add_call_metrics(self, org: str, metrics: CallMetrics) -> None:
        """Sum into the totals; keep the newest reports only, and not past the retention."""
        totals = f"{PREFIX}calltotals:{org}:{metrics.transport}"
        r = self._retention
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(totals, "calls", 1)
            pipe.hincrbyfloat(totals, "duration_s", metrics.duration_s)
            pipe.hincrbyfloat(totals, "loss", metrics.loss)
            pipe.hincrbyfloat(totals, "jitter_ms", metrics.jitter_ms)
            if metrics.rtt_ms is not None:
                pipe.hincrbyfloat(totals, "rtt_ms", metrics.rtt_ms)
                pipe.hincrby(totals, "rtt_calls", 1)
            pipe.sadd(f"{PREFIX}calltotals", f"{org}:{metrics.transport}")
            pipe.lpush(f"{PREFIX}calls", metrics.model_dump_json())
            pipe.ltrim(f"{PREFIX}calls", 0, r.max_recent_calls - 1)
            pipe.expire(f"{PREFIX}calls", max(1, int(r.calls_s)))  # a quiet list goes whole
            await pipe.execute()

    @translated
    async def call_metrics(self) -> list[CallMetrics]:
        raws = await self._redis.lrange(f"{PREFIX}calls", 0, -1)
        return [CallMetrics.model_validate_json(raw) for raw in reversed(raws)]

    @translated
    async def call_totals(self) -> dict[tuple[str, str], CallTotals]:
        out: dict[tuple[str, str], CallTotals] = {}
        for member in sorted(await self._redis.smembers(f"{PREFIX}calltotals")):
            key = str(member)
            org, _, transport = key.rpartition(":")
            h = await self._redis.hgetall(f"{PREFIX}calltotals:{key}")
            out[(org, transport)] = CallTotals(
                int(h.get("calls", 0)), float(h.get("duration_s", 0)), float(h.get("loss", 0)),
                float(h.get("jitter_ms", 0)), float(h.get("rtt_ms", 0)),
                int(h.get("rtt_calls", 0)))
        return out

    # ----------------------------------------------------------------- events

    @translated
    async def publish(self, device_ids: Iterable[str], event: Event) -> None:
        channels = [f"{PREFIX}events:{device_id}" for device_id in device_ids]
        if not channels:
            return
        held = self._held.get(event.meeting_id or "")
        if held is not None and held in _HOLDING.get():  # the holder's own: with its write
            held.events.append((channels, event.model_dump_json()))
            return
        await self._publish(keys=channels, args=[event.model_dump_json()])

    async def subscribe(self, device_id: str) -> AsyncIterator[Event]:
        """The device's events from now on, in order, each once, until cancelled.

        Before its first subscription the reader notes where the device's log ends;
        each time its subscription is in place (the first time, and again after one
        lost with the store: ``cloud.node_bus.resubscribing``) it reads the log past
        the last event it delivered, then the messages, skipping those it has just read
        from the log. So an event published while the subscription was down (the
        connection cut; a failover, between the new primary taking writes and this
        replica subscribing on it) still arrives. The log drops its oldest entries only
        past ``EVENT_LOG_LEN``: a replay that long may have missed some, and is logged
        and counted (``event_gaps``).
        """
        key = f"{PREFIX}events:{device_id}"
        last: tuple[int, int] | None = None  # the log id of the last event delivered

        async def listen(ready: Callable[[], None]) -> AsyncIterator[Event]:
            nonlocal last
            if last is None:
                newest = _log(await self._redis.xrevrange(key, count=1))
                last = newest[0][0] if newest else (0, 0)
            replayed = (0, 0)  # messages up to this id were read from the log just now
            async for data in messages(self._redis, key):
                if data is None:  # subscribed: what the log has past ``last`` first
                    ready()
                    missed = _log(await self._redis.xrange(
                        key, min=f"({last[0]}-{last[1]}", max="+"))
                    if len(missed) >= EVENT_LOG_LEN:  # it keeps at least that many
                        self.event_gaps += 1
                        log.warning("device %s: %d events came while its subscription "
                                    "was down, as many as its log keeps; older ones may be "
                                    "lost", device_id, len(missed))
                    for entry, text in missed:
                        last = replayed = entry
                        if (event := _event(device_id, text)) is not None:
                            self.events_replayed += 1
                            yield event
                    continue
                stamp, _, text = data.partition(" ")
                try:
                    position = _entry_id(stamp)
                except ValueError:
                    position = None
                if position is None or (event := _event(device_id, text)) is None:
                    continue
                if position > replayed:
                    last = position
                    yield event

        def lost() -> None:
            self.subscriptions_lost += 1

        async for event in resubscribing(listen, f"event subscription of device {device_id}",
                                         lost):
            yield event

    # ----------------------------------------------------------------- console logins

    @translated
    async def put_console_session(self, key: str, expires_at: float, ttl_s: int) -> None:
        await self._redis.set(f"{PREFIX}console-session:{key}", repr(expires_at),
                              ex=max(1, ttl_s))

    @translated
    async def console_session(self, key: str) -> float | None:
        raw = await self._redis.get(f"{PREFIX}console-session:{key}")
        return None if raw is None else float(raw)

    @translated
    async def end_console_session(self, key: str) -> None:
        await self._redis.delete(f"{PREFIX}console-session:{key}")

    def node_bus(self, key: bytes) -> RedisNodeBus:
        return RedisNodeBus(self._redis, key)

    async def close(self) -> None:
        await self._scripts.close()
        if self._sentinel is not None:
            await self._sentinel.close()
        else:
            await self._redis.aclose()
