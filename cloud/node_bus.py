"""Nodes across cloud replicas: who has which node, and commands to a node on another replica.

A node holds its control WebSocket to one replica. With the Redis store every
replica announces its nodes (info, health, load) under keys that expire, so a
replica that dies takes its announcements with it; every replica reads all
announcements into its node list. A command for a node held elsewhere is
published on the node's channel; the holding replica forwards it down the
WebSocket and publishes the node's ``leg_allocated`` answer on the request's
reply channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from cloud.redis_errors import translated

PREFIX = "pinhole:"


async def close_pubsub(pubsub: PubSub, timeout_s: float = 1.0) -> None:
    """Unsubscribe and close, bounded and quiet: at shutdown the connection may already be
    gone (the store closed, or cut mid-read by a cancellation), and a cleanup that waits or
    raises there held the server's shutdown and printed tracebacks."""
    with contextlib.suppress(aioredis.RedisError, OSError, TimeoutError):
        async with asyncio.timeout(timeout_s):
            await pubsub.unsubscribe()
    with contextlib.suppress(aioredis.RedisError, OSError, TimeoutError):
        async with asyncio.timeout(timeout_s):
            await pubsub.aclose()  # type: ignore[no-untyped-call]


class NodeBus(Protocol):
    async def announce(self, entries: Iterable[dict[str, Any]], ttl_s: float) -> None: ...
    async def snapshot(self) -> list[dict[str, Any]]: ...
    async def command(self, node_id: str, text: str) -> bool: ...
    def commands(self, node_id: str) -> AsyncIterator[str]: ...
    @translated
    async def request(self, node_id: str, text: str, request_id: str,
                      timeout_s: float) -> str | None: ...
    async def reply(self, request_id: str, text: str) -> None: ...
    async def claim(self, name: str, ttl_s: int) -> bool: ...


class RedisNodeBus:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    @translated
    async def announce(self, entries: Iterable[dict[str, Any]], ttl_s: float) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                node_id = entry["info"]["id"]
                pipe.set(f"{PREFIX}node:{node_id}", json.dumps(entry),
                         px=max(1, int(ttl_s * 1000)))
                pipe.sadd(f"{PREFIX}nodes", node_id)
            await pipe.execute()

    @translated
    async def snapshot(self) -> list[dict[str, Any]]:
        ids = sorted(str(m) for m in await self._redis.smembers(f"{PREFIX}nodes"))
        if not ids:
            return []
        raws = await self._redis.mget([f"{PREFIX}node:{i}" for i in ids])
        return [json.loads(raw) for raw in raws if raw is not None]

    @translated
    async def command(self, node_id: str, text: str) -> bool:
        return int(await self._redis.publish(f"{PREFIX}nodecmd:{node_id}", text)) > 0

    async def commands(self, node_id: str) -> AsyncIterator[str]:
        async for text in self._listen(f"{PREFIX}nodecmd:{node_id}"):
            yield text

    async def _listen(self, channel: str) -> AsyncIterator[str]:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(channel)
        try:
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    yield str(message["data"])
        finally:
            await close_pubsub(pubsub)

    @translated
    async def request(self, node_id: str, text: str, request_id: str,
                      timeout_s: float) -> str | None:
        """Send ``text`` to the node wherever it is held; its answer, or None."""
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(f"{PREFIX}reply:{request_id}")
        try:
            if not await self.command(node_id, text):
                return None
            async with asyncio.timeout(timeout_s):
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        return str(message["data"])
        except TimeoutError:
            return None
        finally:
            await close_pubsub(pubsub)
        return None

    @translated
    async def reply(self, request_id: str, text: str) -> None:
        await self._redis.publish(f"{PREFIX}reply:{request_id}", text)

    @translated
    async def claim(self, name: str, ttl_s: int) -> bool:
        """True for exactly one replica that asks within ``ttl_s``."""
        return bool(await self._redis.set(f"{PREFIX}claim:{name}", "1", nx=True, ex=ttl_s))
