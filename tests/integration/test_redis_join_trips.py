"""A join on the Redis store is two round trips, and its event never precedes its write.

The defect it pins down: a join made seven Redis round trips (the device, the
meeting, the report, the lock, the write, the release, the event), so Redis
joined 934/s where memory joined 2,900/s on the same core (``bench/join.py``).
Now the lock's script reads the meeting, the device and its report, and one
more script writes the meeting, publishes the event and releases the lock.
Counted on a real redis-server with MONITOR: commands a script runs are shown
as ``lua`` there, the round trips as the client's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from cloud.errors import StoreUnavailable
from cloud.redis_store import PREFIX, RedisStore
from cloud.store import DeviceRecord, MeetingRecord, ParticipantRecord
from tests.integration.redis_server import redis_server
from tests.integration.subscriptions import subscribed
from tests.waiting import until, until_async
from wire.models import Event, ProbeResult, ReachabilityReport
from wire.transports import RungName

pytestmark = pytest.mark.redis

REPORT = ReachabilityReport(results=[ProbeResult(node_id="n1", rung=RungName.UDP_5004,
                                                 reachable=True, rtt_ms=9.0)])
ALICE = ParticipantRecord("p-alice", "d-alice", "n1", 1, "leg-a", "udp/5004")
BOB = ParticipantRecord("p-bob", "d-bob", "n1", 2, "leg-b")


@pytest.fixture
async def url(tmp_path: Path) -> AsyncIterator[str]:
    async with redis_server(tmp_path) as running:
        yield running


async def _seed(store: RedisStore) -> None:
    await store.put_device(DeviceRecord("d-bob", "acme", "bob", "desktop", 1))
    await store.put_reachability("d-bob", REPORT, ttl_s=60)
    await store.put_meeting(MeetingRecord("m1", "acme", "standup", 1.0, (ALICE,)))


async def lapsed(store: RedisStore, meeting_id: str) -> None:
    """Return once Redis has expired the meeting's lock (its own TTL, not a sleep)."""
    async def gone() -> bool:
        return not await store._redis.exists(f"{PREFIX}lock:meeting:{meeting_id}")

    await until_async(gone, f"the lock of {meeting_id} expired", poll_s=0.01)


async def _join(store: RedisStore) -> None:
    """What the join route does with the store, in its order."""
    async with store.meeting_lock("m1", "d-bob"):
        assert await store.get_device("d-bob") == DeviceRecord(
            "d-bob", "acme", "bob", "desktop", 1)
        meeting = await store.get_meeting("m1")
        stored = await store.get_reachability("d-bob")
        assert meeting is not None and stored is not None and stored.report == REPORT
        await store.put_meeting(MeetingRecord("m1", "acme", "standup", 1.0, (ALICE, BOB)))
        await store.publish(["d-alice"], Event(type="participant.joined", meeting_id="m1",
                                               participant_id="p-bob", node_id="n1"))


async def test_a_join_is_two_round_trips(url: str) -> None:
    store = RedisStore(url)
    await _seed(store)
    await _join(store)  # the scripts are loaded (SCRIPT LOAD) once, on first use
    watcher = aioredis.Redis.from_url(url, decode_responses=True)
    seen: list[str] = []
    async with watcher.monitor() as monitor:
        async def watch() -> None:
            while True:
                info = await monitor.next_command()
                if info["client_type"] != "lua":
                    seen.append(info["command"].split()[0].upper())

        watching = asyncio.create_task(watch())
        await store.ping()  # the monitor is listening once it shows this
        await until(lambda: "PING" in seen, "the monitor showed the first PING")
        seen.clear()
        await _join(store)
        await store.ping()  # after the join's commands, in order
        await until(lambda: "PING" in seen, "the monitor showed the second PING")
        watching.cancel()
    await watcher.aclose()
    assert seen[:-1] == ["EVALSHA", "EVALSHA"], seen  # lock + reads; write + event + release
    meeting = await store.get_meeting("m1")
    assert meeting is not None and meeting.participants == (ALICE, BOB)
    await store.close()


async def test_the_event_goes_out_after_the_write(url: str) -> None:
    """Whoever hears ``participant.joined`` can read the meeting with the new participant."""
    store, reader = RedisStore(url), RedisStore(url)
    await _seed(store)
    heard: list[MeetingRecord | None] = []

    async def listen() -> None:
        async for _event in reader.subscribe("d-alice"):
            heard.append(await reader.get_meeting("m1"))
            return

    listening = asyncio.create_task(listen())
    await subscribed(reader, "d-alice")
    await _join(store)
    await asyncio.wait_for(listening, 5)
    assert heard and heard[0] is not None and heard[0].participants == (ALICE, BOB)
    await store.close()
    await reader.close()


async def test_a_holder_whose_lock_expired_writes_nothing(url: str) -> None:
    """Its lock expired and was taken by another replica: no overwrite, no event, a 503."""
    store, other = RedisStore(url), RedisStore(url)
    await _seed(store)
    with pytest.raises(StoreUnavailable, match="expired"):
        async with store.meeting_lock("m1", "d-bob", ttl_ms=100):
            await store.put_meeting(MeetingRecord("m1", "acme", "stale", 1.0, (ALICE, BOB)))
            await lapsed(store, "m1")
            async with other.meeting_lock("m1"):  # another replica's change meanwhile
                await other.put_meeting(MeetingRecord("m1", "acme", "newer", 1.0, (ALICE,)))
    meeting = await other.get_meeting("m1")
    assert meeting is not None and meeting.title == "newer"
    await store.close()
    await other.close()


async def test_an_event_raised_beside_a_holder_is_not_lost_with_its_lock(url: str) -> None:
    """The defect it pins down: an event about a meeting whose lock this replica held was
    kept for the holder's commit whoever raised it. A leave writes under its own lock and
    publishes ``participant.left`` after it; a join holding the lock by then took the
    event along, and when that join's lock lapsed (the commit refused: StoreUnavailable)
    the event was gone, though the leave it told of had been written. Now only the
    holder's own events wait for its write; the other goes out at once."""
    store, reader = RedisStore(url), RedisStore(url)
    await _seed(store)
    heard: list[Event] = []

    async def listen() -> None:
        async for event in reader.subscribe("d-alice"):
            heard.append(event)
            return

    listening = asyncio.create_task(listen())
    await subscribed(reader, "d-alice")
    holding, raised = asyncio.Event(), asyncio.Event()

    async def join_whose_lock_lapses() -> None:
        async with store.meeting_lock("m1", "d-bob", ttl_ms=100):
            holding.set()
            await store.put_meeting(MeetingRecord("m1", "acme", "standup", 1.0, (ALICE, BOB)))
            await raised.wait()
            await lapsed(store, "m1")  # expired before the commit

    joining = asyncio.create_task(join_whose_lock_lapses())
    await holding.wait()
    await store.publish(["d-alice"], Event(type="participant.left", meeting_id="m1",
                                           participant_id="p-carol"))
    raised.set()
    with pytest.raises(StoreUnavailable, match="expired"):
        await joining
    await asyncio.wait_for(listening, 5)
    assert [e.type for e in heard] == ["participant.left"]
    await store.close()
    await reader.close()
