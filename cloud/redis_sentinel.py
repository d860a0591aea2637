"""The store through Redis Sentinel: ``redis+sentinel://HOST:PORT,HOST:PORT,.../SERVICE/DB``.

The URL names the Sentinels (at least one; a password before them,
``redis+sentinel://:PASSWORD@…``, is the Redis servers' own, not the
Sentinels'), the service they monitor and the database. Reads and writes go to
the current primary, which redis-py's Sentinel support asks the Sentinels for
whenever it connects; a connection to a primary that was demoted (``READONLY``)
is dropped and made again. During a failover a command fails with a connection
error, which :mod:`cloud.redis_errors` makes ``StoreUnavailable`` (503 with a
hint), until the Sentinels have promoted the replica.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from wire.address import Address

SCHEME: Final = "redis+sentinel://"
SOCKET_TIMEOUT_S: Final = 2.0  # a Sentinel or primary that accepts but does not answer


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    sentinels: tuple[Address, ...]
    service: str
    db: int = 0
    password: str | None = None


def parse(url: str) -> SentinelTarget:
    """A ``redis+sentinel://`` URL; ``ValueError`` saying what is wrong with it."""
    if not url.startswith(SCHEME):
        raise ValueError(f"not a {SCHEME} URL: {url!r}")
    rest = url[len(SCHEME):]
    where, _, path = rest.partition("/")
    credentials, at, hosts = where.rpartition("@")
    if not at:
        hosts = where
    password = urllib.parse.unquote(credentials.partition(":")[2]) if at else None
    sentinels = []
    for item in hosts.split(","):
        host, colon, port = item.rpartition(":")
        host = host.strip("[]")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{url!r}: want HOST:PORT for each Sentinel, not {item!r}")
        sentinels.append(Address(host, int(port)))
    service, _, db = path.partition("/")
    if not service:
        raise ValueError(f"{url!r}: name the monitored service after the Sentinels "
                         "(…/SERVICE/DB)")
    if db and not db.isdigit():
        raise ValueError(f"{url!r}: the database must be a number, not {db!r}")
    return SentinelTarget(tuple(sentinels), service, int(db or 0), password or None)


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """The primary's connections through the Sentinels, from a pool where a request
    waits for a free connection under a burst (as the plain store's pool does)."""


class SentinelClient:
    """A client of the current primary, and where that primary is now."""

    def __init__(self, target: SentinelTarget, max_connections: int,
                 wait_s: float) -> None:
        self.target = target
        self._sentinel = Sentinel(  # type: ignore[no-untyped-call]
            [tuple(s) for s in target.sentinels],
            sentinel_kwargs={"socket_timeout": SOCKET_TIMEOUT_S,
                             "socket_connect_timeout": SOCKET_TIMEOUT_S})
        self.redis: aioredis.Redis = self._sentinel.master_for(
            target.service, connection_pool_class=BlockingSentinelPool,
            db=target.db, password=target.password, decode_responses=True,
            max_connections=max_connections, timeout=wait_s,
            # no read timeout: a pub/sub subscription waits for messages as long as it likes
            socket_connect_timeout=SOCKET_TIMEOUT_S)

    async def primary(self) -> Address:
        """The primary the Sentinels name now (``MasterNotFoundError`` during a failover,
        a ``ConnectionError``)."""
        host, port = await self._sentinel.discover_master(self.target.service)
        return Address(str(host), int(port))

    async def close(self) -> None:
        await self.redis.aclose()
        await self._sentinel.aclose()
