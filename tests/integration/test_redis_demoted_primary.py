"""A join's scripts on a primary the Sentinels demoted: left, and the new one found.

After a failover the old primary may come back as a replica of the new one; a
connection still open to it answers every write ``READONLY``. The join's script
runner (``cloud.redis_scripts``, given ``locate`` with Sentinel) then fails that one
command (``StoreUnavailable`` for the route: 503 with a hint), drops the connection,
and its next command goes where ``locate`` says the primary is now. Real
redis-servers: a primary and its replica, the replica playing the demoted primary.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ReadOnlyError

from cloud.redis_scripts import Script, ScriptRunner
from tests.integration.redis_server import redis_server
from tests.waiting import until_async
from wire.address import Address

pytestmark = pytest.mark.redis

WRITE = Script("redis.call('set', KEYS[1], ARGV[1]) return 'written'")


def _address(url: str) -> Address:
    host, _, port = url.removeprefix("redis://").partition("/")[0].rpartition(":")
    return Address(host, int(port))


async def test_a_readonly_answer_leaves_for_the_primary_located_next(tmp_path: Path) -> None:
    for directory in ("p", "r"):
        (tmp_path / directory).mkdir()
    async with redis_server(tmp_path / "p") as primary_url:
        primary = _address(primary_url)
        async with redis_server(tmp_path / "r", "--replicaof", primary.host,
                                str(primary.port), "--dbfilename", "replica.rdb") as url:
            replica = _address(url)
            located = [replica, primary]  # stale at first, then the real primary

            async def locate() -> Address:
                return located.pop(0) if len(located) > 1 else located[0]

            runner = ScriptRunner("redis://primary/0", locate=locate)
            try:
                with pytest.raises(ReadOnlyError):
                    await runner.run(WRITE, ["k"], ["v"])
                assert await runner.run(WRITE, ["k"], ["v"]) == "written"
            finally:
                await runner.close()
            follower = aioredis.Redis(host=replica.host, port=replica.port)
            try:  # the write went to the primary, and on to its replica
                async def replicated() -> bool:
                    return await follower.get("k") == b"v"

                await until_async(replicated, "the write reached the replica")
            finally:
                await follower.aclose()
