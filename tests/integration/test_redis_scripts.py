"""``cloud.redis_scripts.ScriptRunner``: the join's scripts, pipelined on one connection.

What redis-py's client did for them must still hold on a real redis-server:
every caller gets its own answer however many are in flight; a server that
forgot its scripts (``SCRIPT FLUSH``, a restart) gets them again; a command
cancelled while it waited never leaves its answer for the next command; a
password and a database in the URL are used; a server that is gone is a
``ConnectionError``, which the store turns into ``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import uvloop
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from cloud.errors import StoreUnavailable
from cloud.redis_scripts import Script, ScriptRunner
from cloud.redis_store import RedisStore
from tests.integration.redis_server import redis_server
from tests.waiting import until

pytestmark = pytest.mark.redis

ECHO = Script("return ARGV[1]")
# busy for ARGV[1] milliseconds (the server's own clock), then answers "slow"
SLOW = Script("local t = redis.call('TIME') local start = t[1] * 1000 + t[2] / 1000 "
              "repeat t = redis.call('TIME') until t[1] * 1000 + t[2] / 1000 - start "
              ">= tonumber(ARGV[1]) return 'slow'")


@pytest.fixture
async def url(tmp_path: Path) -> AsyncIterator[str]:
    async with redis_server(tmp_path) as running:
        yield running


async def test_every_caller_gets_its_own_answer(url: str) -> None:
    """Commands started in one turn leave in one write; answers return in order."""
    runner = ScriptRunner(url)
    answers = await asyncio.gather(*(runner.run(ECHO, [], [f"n{i}"]) for i in range(300)))
    assert answers == [f"n{i}" for i in range(300)]
    await runner.close()


def test_it_runs_on_uvloop_as_the_cloud_does(tmp_path: Path) -> None:
    """uvloop's transports are not ``asyncio.Transport`` subclasses (a check that assumed
    so hung every join of a cloud on Redis, while the asyncio-loop tests passed)."""

    async def scenario() -> list[str]:
        async with redis_server(tmp_path) as url:
            runner = ScriptRunner(url)
            try:
                return list(await asyncio.wait_for(asyncio.gather(
                    *(runner.run(ECHO, [], [str(i)]) for i in range(20))), 10))
            finally:
                await runner.close()

    assert uvloop.run(scenario()) == [str(i) for i in range(20)]


async def test_a_password_and_a_database_are_used(tmp_path: Path) -> None:
    async with redis_server(tmp_path, "--requirepass", "s3cret") as url:
        guarded = url.replace("redis://", "redis://:s3cret@").rsplit("/", 1)[0] + "/3"
        admin = aioredis.Redis.from_url(guarded, decode_responses=True)
        await admin.set("where", "db3")
        runner = ScriptRunner(guarded)
        assert await runner.run(Script("return redis.call('GET', KEYS[1])"),
                                ["where"], []) == "db3"
        wrong = ScriptRunner(url)  # no password
        with pytest.raises(ResponseError, match="NOAUTH"):
            await wrong.run(ECHO, [], ["x"])
        await admin.aclose()
        await runner.close()
        await wrong.close()


async def test_a_server_that_forgot_the_script_gets_it_again(url: str) -> None:
    runner = ScriptRunner(url)
    assert await runner.run(ECHO, [], ["one"]) == "one"
    admin = aioredis.Redis.from_url(url)
    await admin.script_flush()
    assert await runner.run(ECHO, [], ["two"]) == "two"  # NOSCRIPT, loaded, run
    await admin.aclose()
    await runner.close()


async def test_a_cancelled_command_never_answers_the_next_one(url: str) -> None:
    runner = ScriptRunner(url)  # one connection: the next answer read is the next command's
    assert await runner.run(SLOW, [], [0]) == "slow"  # loaded: the next run is one EVALSHA
    slow = asyncio.create_task(runner.run(SLOW, [], [1000]))

    def written() -> bool:  # on its way to Redis, its answer awaited
        pipe = runner._pipe
        return pipe is not None and len(pipe.waiting) == 1 and not pipe._out

    await until(written, "the slow script was sent")
    slow.cancel()  # a second before its answer can come
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert await runner.run(ECHO, [], ["mine"]) == "mine"  # not the slow one's "slow"
    await runner.close()


async def test_a_server_that_is_gone_is_a_connection_error(tmp_path: Path) -> None:
    async with redis_server(tmp_path) as gone:
        pass
    runner = ScriptRunner(gone)
    with pytest.raises(RedisConnectionError):
        await runner.run(ECHO, [], ["x"])
    store = RedisStore(gone)
    with pytest.raises(StoreUnavailable):
        async with store.meeting_lock("m1", "d1"):
            pass
    await store.close()
    await runner.close()


async def test_a_server_that_speaks_no_resp_is_a_connection_error() -> None:
    """Bytes that are not RESP (or answers nobody asked for) end the connection: every
    waiting command fails, none hangs and no callback raises."""

    async def not_redis(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(b"?this is not RESP\r\n")
        await writer.drain()

    server = await asyncio.start_server(not_redis, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    runner = ScriptRunner(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(runner.run(ECHO, [], ["x"]), 5)
    await runner.close()
    server.close()
