"""Both store backends behave the same: memory, and Redis on a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from cloud.redis_store import RedisStore
from cloud.store import (
    CascadeRecord,
    DeviceRecord,
    MeetingRecord,
    MemoryStore,
    ParticipantRecord,
    Store,
)
from cloud.store_factory import open_store
from tests.integration.redis_server import redis_server
from tests.integration.subscriptions import subscribed
from tests.waiting import FakeClock, until_async
from wire.models import CallMetrics, Event, ProbeResult, ReachabilityReport
from wire.transports import RungName

pytestmark = pytest.mark.redis


@pytest.fixture
def clock() -> FakeClock:
    """The memory store's clock; Redis keeps its own (expiry is the server's)."""
    return FakeClock(start=1.7e9)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path,
                clock: FakeClock) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore(clock=clock)
        return
    async with redis_server(tmp_path) as url:
        backend = open_store(url)
        yield backend
        await backend.close()


REPORT = ReachabilityReport(results=[ProbeResult(node_id="n1", rung=RungName.UDP_5004,
                                                 reachable=True, rtt_ms=12.5)])


async def test_devices(store: Store) -> None:
    await store.put_device(DeviceRecord("d1", "acme", "alice", "desktop", 1))
    await store.put_device(DeviceRecord("d1", "acme", "alice", "desktop", 2))
    assert await store.get_device("d1") == DeviceRecord("d1", "acme", "alice", "desktop", 2)
    assert await store.get_device("nope") is None
    assert await store.count_devices() == 1 and await store.list_device_ids() == ["d1"]


async def test_reachability_expires_with_the_ttl(store: Store, clock: FakeClock) -> None:
    """Seed: "The probing data cache expiry is set to 2 hours." (here 1 s: the memory
    store's clock is moved past it; Redis expires the key itself, awaited)."""
    stored = await store.put_reachability("d1", REPORT, ttl_s=1)
    assert (stored.expires_at - stored.stored_at).total_seconds() == pytest.approx(1)
    got = await store.get_reachability("d1")
    assert got is not None and got.report == REPORT
    assert await store.count_reports() == 1
    clock.advance(1.0)

    async def expired() -> bool:
        return await store.get_reachability("d1") is None

    await until_async(expired, "the report expired")
    assert await store.count_reports() == 0


async def test_meetings_round_trip(store: Store) -> None:
    meeting = MeetingRecord("m1", "acme", "t", 1.5,
                            (ParticipantRecord("p1", "d1", "n1", 7, "leg-1", "udp/5004"),),
                            (CascadeRecord("c1", "n2", "n1"),))
    await store.put_meeting(meeting)
    assert await store.get_meeting("m1") == meeting
    assert await store.list_meetings() == [meeting]
    assert await store.get_meeting("nope") is None


async def test_call_metrics(store: Store) -> None:
    metrics = CallMetrics(meeting_id="m", participant_id="p", transport=RungName.TLS_443,
                          duration_s=1, packets_sent=1, packets_received=1, loss=0,
                          jitter_ms=0)
    await store.add_call_metrics("acme", metrics)
    assert await store.call_metrics() == [metrics]


async def test_events_reach_subscribers(store: Store) -> None:
    received: list[Event] = []

    async def listen() -> None:
        async for event in store.subscribe("d1"):
            received.append(event)

    task = asyncio.create_task(listen())
    await subscribed(store, "d1")
    event = Event(type="probe.requested", node_id="n1")
    marker = Event(type="participant.left")
    await store.publish(["d1", "d2"], event)
    await store.publish(["d1"], marker)  # in order after it: nothing more of the first

    async def marked() -> bool:
        return marker in received

    await until_async(marked, "the marker event arrived")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert received == [event, marker]


async def test_meeting_lock_excludes(store: Store) -> None:
    inside: list[int] = []
    overlaps = 0

    async def critical(n: int) -> None:
        nonlocal overlaps
        async with store.meeting_lock("m1"):
            if inside:
                overlaps += 1
            inside.append(n)
            await asyncio.sleep(0.01)
            inside.remove(n)

    await asyncio.gather(*(critical(n) for n in range(8)))
    assert overlaps == 0


async def test_redis_lock_queues_one_replicas_joins_without_polling(tmp_path: Path) -> None:
    """One replica's joins to one meeting wait for each other, not for a Redis poll.

    The defect: every waiter retried ``SET NX`` every 10 ms, so a busy meeting's
    joins each waited for a poll tick (join p99 45 ms on Redis). Now they queue
    on the replica's own lock: one ``SET`` per holder, counted by Redis itself
    (INFO commandstats), and the queue is gone once the meeting is quiet.
    """
    async with redis_server(tmp_path) as url:
        store = RedisStore(url)
        observer = aioredis.from_url(url, decode_responses=True)

        async def set_calls() -> int:
            stats = await observer.info("commandstats")
            return int(stats.get("cmdstat_set", {}).get("calls", 0))

        before = await set_calls()
        order: list[int] = []

        async def critical(n: int) -> None:
            async with store.meeting_lock("m1"):
                order.append(n)
                await asyncio.sleep(0.02)

        await asyncio.gather(*(critical(n) for n in range(8)))
        assert sorted(order) == list(range(8))
        assert await set_calls() - before == 8
        assert not store._queues
        await observer.aclose()
        await store.close()


async def test_redis_burst_beyond_the_pool_waits_instead_of_failing(tmp_path: Path) -> None:
    """More concurrent requests than pooled connections: all answered, none refused.

    The defect: redis-py's default pool raised ``MaxConnectionsError`` past 100
    connections, so an open-loop burst of joins got 500s (4,187 of 5,000 in the
    join benchmark at 500/s).
    """
    async with redis_server(tmp_path) as url:
        store = open_store(url)
        await store.put_device(DeviceRecord(device_id="d1", org="acme", name="d1",
                                            profile="desktop", generation=1))
        found = await asyncio.gather(*(store.get_device("d1") for _ in range(300)))
        assert all(d is not None and d.device_id == "d1" for d in found)
        await store.close()


async def test_redis_meeting_is_read_with_its_lock(tmp_path: Path) -> None:
    """A join's reads of the meeting it has locked cost no round trip, and never go stale.

    The lock script returns the meeting with the lock (one round trip where a
    join made two); inside the lock no ``GET`` reaches Redis, a write is
    read back, and once released the next read asks Redis again and sees
    another replica's write.
    """
    first = MeetingRecord("m1", "acme", "first", 1.0, (), ())
    second = MeetingRecord("m1", "acme", "second", 1.0, (), ())
    third = MeetingRecord("m1", "acme", "third", 1.0, (), ())
    async with redis_server(tmp_path) as url:
        store, other = RedisStore(url), RedisStore(url)
        observer = aioredis.from_url(url, decode_responses=True)

        async def gets() -> int:
            stats = await observer.info("commandstats")
            return int(stats.get("cmdstat_get", {}).get("calls", 0))

        await store.put_meeting(first)
        async with store.meeting_lock("m1"):
            before = await gets()
            assert await store.get_meeting("m1") == first
            await store.put_meeting(second)
            assert await store.get_meeting("m1") == second
            assert await gets() == before
        await other.put_meeting(third)  # another replica, after the release
        assert await store.get_meeting("m1") == third
        async with store.meeting_lock("absent"):
            assert await store.get_meeting("absent") is None
        for backend in (store, other):
            await backend.close()
        await observer.aclose()
