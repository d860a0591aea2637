"""Waiting until a device's event subscription is live, instead of sleeping "to subscribe".

An event published before the subscriber's ``SUBSCRIBE`` reached the store is lost
(Redis pub/sub keeps nothing), so a test publishes only once the store counts the
subscription: the memory store's own set, or Redis ``PUBSUB NUMSUB``.
"""

from __future__ import annotations

from aiohttp import web

from cloud.redis_store import PREFIX, RedisStore
from cloud.state import CLOUD
from cloud.store import MemoryStore, Store
from tests.waiting import until_async


async def subscribers(store: Store, device_id: str) -> int:
    """How many event subscriptions the store holds for ``device_id``."""
    if isinstance(store, MemoryStore):
        return len(store._subscribers.get(device_id, ()))
    assert isinstance(store, RedisStore), type(store)
    [(_, count)] = await store._redis.pubsub_numsub(f"{PREFIX}events:{device_id}")
    return int(count)


async def subscribed(store: Store, device_id: str, count: int = 1) -> None:
    """Return once ``count`` subscriptions for ``device_id`` are live in ``store``."""
    async def live() -> bool:
        return await subscribers(store, device_id) >= count

    await until_async(live, f"{count} event subscription(s) of {device_id} live")


def store_of(app: web.Application) -> Store:
    """The store a cloud app serves from."""
    return app[CLOUD].store
