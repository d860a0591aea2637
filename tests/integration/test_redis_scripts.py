"""``cloud.redis_scripts.ScriptRunner``: the join's scripts off redis-py's command path.

What redis-py's client did for them must still hold on a real redis-server:
a server that forgot its scripts (``SCRIPT FLUSH``, a restart) gets them
again; a command cancelled while it waited never leaves its answer for the
next command on that connection; a server that is gone is a
``ConnectionError``, which the store turns into ``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from cloud.redis_scripts import Script, ScriptRunner
from cloud.redis_store import RedisStore
from cloud.store import StoreUnavailable
from tests.integration.redis_server import redis_server

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


async def test_a_server_that_forgot_the_script_gets_it_again(url: str) -> None:
    runner = ScriptRunner(url, 4)
    assert await runner.run(ECHO, [], ["one"]) == "one"
    admin = aioredis.Redis.from_url(url)
    await admin.script_flush()
    assert await runner.run(ECHO, [], ["two"]) == "two"  # NOSCRIPT, loaded, run
    await admin.aclose()
    await runner.close()


async def test_a_cancelled_command_never_answers_the_next_one(url: str) -> None:
    runner = ScriptRunner(url, 1)  # one connection: the next command would reuse it
    slow = asyncio.create_task(runner.run(SLOW, [], [300]))
    await asyncio.sleep(0.1)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert await runner.run(ECHO, [], ["mine"]) == "mine"  # not the slow one's "slow"
    await runner.close()


async def test_a_server_that_is_gone_is_a_connection_error(tmp_path: Path) -> None:
    async with redis_server(tmp_path) as gone:
        pass
    runner = ScriptRunner(gone, 2)
    with pytest.raises(RedisConnectionError):
        await runner.run(ECHO, [], ["x"])
    store = RedisStore(gone)
    with pytest.raises(StoreUnavailable):
        async with store.meeting_lock("m1", "d1"):
            pass
    await store.close()
    await runner.close()
