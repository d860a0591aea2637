"""Redis failures become the store's domain error, :class:`cloud.store.StoreUnavailable`.

The routes then answer 503 ``store_unavailable`` (no traceback), and the
readiness watch (:mod:`cloud.readiness`) reports the store down.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aioredis

from cloud.store import StoreUnavailable

P = ParamSpec("P")
R = TypeVar("R")
REDIS_FAILURES: tuple[type[Exception], ...] = (aioredis.RedisError, OSError)


def translated(fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """``fn`` with Redis and socket errors raised as :class:`StoreUnavailable`."""

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except REDIS_FAILURES as exc:
            raise StoreUnavailable(f"the store does not answer ({exc})") from exc

    return call
