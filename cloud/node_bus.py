"""Nodes across cloud replicas: who has which node, and commands to a node on another replica.

A node holds its control WebSocket to one replica. With the Redis store every
replica announces its nodes (info, health, load) under keys that expire, so a
replica that dies takes its announcements with it; every replica reads all
announcements into its node list. A command for a node held elsewhere is
published on the node's channel; the holding replica forwards it down the
WebSocket and publishes the node's ``leg_allocated`` answer on the request's
reply channel.

Commands and replies on pub/sub are authenticated: each is sealed as
``<issued-at> <HMAC-SHA256 hex> <text>``, the HMAC (RFC 2104) keyed from the
cloud's node secret (:func:`bus_key`; every replica has it) over the channel,
the time and the text. A message with a bad or missing HMAC, for another
channel, or older than ``MAX_AGE_S`` is ignored and counted (``forged``), so
whoever can publish to Redis cannot drive the nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from cloud.redis_errors import raise_if_cancelling, redis_failures, translated

if TYPE_CHECKING:  # redis is imported by the Redis store, the only maker of a RedisNodeBus
    import redis.asyncio as aioredis
    from redis.asyncio.client import PubSub

PREFIX = "pinhole:"
MAX_AGE_S: Final = 30.0  # a sealed message older than this (or from the future) is refused
RESUBSCRIBE_FIRST_S: Final = 0.05  # a lost subscription is made again after this, then 2×
RESUBSCRIBE_MAX_S: Final = 1.0

log = logging.getLogger(__name__)
T = TypeVar("T")


def bus_key(node_secret: str) -> bytes:
    """The pub/sub HMAC key, derived from the node secret every replica shares."""
    return hmac.new(node_secret.encode(), b"pinhole node bus v1", hashlib.sha256).digest()


def seal(key: bytes, channel: str, text: str, now: float) -> str:
    stamp = f"{now:.3f}"
    mac = hmac.new(key, f"{channel}\n{stamp}\n{text}".encode(), hashlib.sha256).hexdigest()
    return f"{stamp} {mac} {text}"


def unseal(key: bytes, channel: str, sealed: str, now: float) -> str | None:
    """The text of a message sealed for ``channel`` with ``key``, or None."""
    parts = sealed.split(" ", 2)
    if len(parts) != 3:
        return None
    stamp, mac, text = parts
    try:
        issued = float(stamp)
    except ValueError:
        return None
    expected = hmac.new(key, f"{channel}\n{stamp}\n{text}".encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, expected) or abs(now - issued) > MAX_AGE_S:
        return None
    return text


async def close_pubsub(pubsub: PubSub, timeout_s: float = 1.0) -> None:
    """Unsubscribe and close, bounded and quiet: at shutdown the connection may already be
    gone (the store closed, or cut mid-read by a cancellation), and a cleanup that waits or
    raises there held the server's shutdown and printed tracebacks."""
    with contextlib.suppress(*redis_failures(), TimeoutError):
        async with asyncio.timeout(timeout_s):
            await pubsub.unsubscribe()
    with contextlib.suppress(*redis_failures(), TimeoutError):
        async with asyncio.timeout(timeout_s):
            await pubsub.aclose()  # type: ignore[no-untyped-call]


async def messages(redis: aioredis.Redis, channel: str) -> AsyncIterator[str | None]:
    """``None`` once Redis confirms the subscription to ``channel`` (what was published
    before then was not heard here), then the data of each message published on it;
    a lost connection raises (one of :func:`redis_failures`)."""
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(channel)
        async for message in pubsub.listen():
            kind = message.get("type")
            if kind == "subscribe":
                yield None
            elif kind == "message":
                yield str(message["data"])
    finally:
        await close_pubsub(pubsub)


async def resubscribing(listen: Callable[[Callable[[], None]], AsyncIterator[T]], what: str,
                        lost: Callable[[], None] = lambda: None) -> AsyncIterator[T]:
    """What ``listen(ready)`` yields, until cancelled; ``listen`` subscribes and calls
    ``ready()`` once its subscription is in place.

    A subscription lost with the store (its primary killed, failed over or restarted,
    or the connection cut) is made again, on whatever primary there is then, waiting
    twice as long after each failure (from ``RESUBSCRIBE_FIRST_S`` up to
    ``RESUBSCRIBE_MAX_S``); ``lost()`` is called for each subscription that was in place
    and is lost, and one warning is logged per outage, not per attempt. Before, the
    tasks forwarding a node's commands and a device's events ended with the lost
    connection, while the node's and the device's WebSockets stayed open.
    """
    wait, up = RESUBSCRIBE_FIRST_S, False

    def ready() -> None:
        nonlocal wait, up
        wait, up = RESUBSCRIBE_FIRST_S, True

    while True:
        try:
            async for item in listen(ready):
                yield item
        except redis_failures() as exc:
            raise_if_cancelling()
            if up:
                lost()
            if wait == RESUBSCRIBE_FIRST_S:
                log.warning("%s lost (%s); subscribing again until the store answers",
                            what, exc or type(exc).__name__)
        up = False
        await asyncio.sleep(wait)
        wait = min(wait * 2, RESUBSCRIBE_MAX_S)


class NodeBus(Protocol):
    forged: int  # pub/sub messages ignored for a bad HMAC, channel or age

    async def announce(self, entries: Iterable[dict[str, Any]], ttl_s: float) -> None: ...
    async def snapshot(self) -> list[dict[str, Any]]: ...
    async def command(self, node_id: str, text: str) -> bool: ...
    def commands(self, node_id: str) -> AsyncIterator[str]: ...
    @translated
    async def request(self, node_id: str, text: str, request_id: str,
                      timeout_s: float) -> str | None: ...
    async def reply(self, request_id: str, text: str) -> None: ...
    async def claim(self, name: str, ttl_s: int) -> bool: ...
    async def unclaim(self, name: str) -> None: ...
    async def withdraw(self, node_id: str) -> None: ...
    async def remember(self, node_id: str, registration: dict[str, Any]) -> None: ...
    async def recall(self, node_id: str) -> dict[str, Any] | None: ...


class RedisNodeBus:
    def __init__(self, redis: aioredis.Redis, key: bytes,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._key = key
        self._clock = clock
        self.forged = 0

    async def _publish(self, channel: str, text: str) -> int:
        return int(await self._redis.publish(channel, seal(self._key, channel, text,
                                                           self._clock())))

    def _open(self, channel: str, data: Any) -> str | None:
        text = unseal(self._key, channel, str(data), self._clock())
        if text is None:
            self.forged += 1
            log.warning("ignored a message on %s without a valid HMAC (%d so far)",
                        channel, self.forged)
        return text

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
        return await self._publish(f"{PREFIX}nodecmd:{node_id}", text) > 0

    async def commands(self, node_id: str) -> AsyncIterator[str]:
        """Commands other replicas publish for ``node_id``, until cancelled; a lost
        subscription is made again (:func:`resubscribing`). Before, every command other
        replicas sent the node after a failover went unanswered, and every join placed
        on it through them failed."""
        channel = f"{PREFIX}nodecmd:{node_id}"

        async def listen(ready: Callable[[], None]) -> AsyncIterator[str]:
            async for data in messages(self._redis, channel):
                if data is None:
                    ready()
                elif (text := self._open(channel, data)) is not None:
                    yield text

        async for text in resubscribing(listen, f"subscription to {channel}"):
            yield text

    @translated
    async def request(self, node_id: str, text: str, request_id: str,
                      timeout_s: float) -> str | None:
        """Send ``text`` to the node wherever it is held; its answer, or None."""
        channel = f"{PREFIX}reply:{request_id}"
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(channel)
        try:
            if not await self.command(node_id, text):
                return None
            async with asyncio.timeout(timeout_s):
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        answer = self._open(channel, message["data"])
                        if answer is not None:
                            return answer
        except TimeoutError:
            return None
        finally:
            await close_pubsub(pubsub)
        return None

    @translated
    async def reply(self, request_id: str, text: str) -> None:
        await self._publish(f"{PREFIX}reply:{request_id}", text)

    @translated
    async def claim(self, name: str, ttl_s: int) -> bool:
        """True for exactly one replica that asks until it unclaims (``ttl_s``: if it dies)."""
        return bool(await self._redis.set(f"{PREFIX}claim:{name}", "1", nx=True, ex=ttl_s))

    async def unclaim(self, name: str) -> None:
        """The work is done: the next failure may be claimed at once."""
        await self._redis.delete(f"{PREFIX}claim:{name}")

    async def remember(self, node_id: str, registration: dict[str, Any]) -> None:
        """A node registered with one replica may open its control channel on another."""
        await self._redis.set(f"{PREFIX}registration:{node_id}", json.dumps(registration),
                              ex=86400)

    async def recall(self, node_id: str) -> dict[str, Any] | None:
        raw = await self._redis.get(f"{PREFIX}registration:{node_id}")
        return None if raw is None else dict(json.loads(raw))

    async def withdraw(self, node_id: str) -> None:
        """The node's control channel closed here: no replica may read it as healthy."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(f"{PREFIX}node:{node_id}")
            pipe.srem(f"{PREFIX}nodes", node_id)
            await pipe.execute()
