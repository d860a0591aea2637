"""Redis failures become the store's domain error, :class:`cloud.errors.StoreUnavailable`.

The routes then answer 503 ``store_unavailable`` (no traceback), and the
readiness watch (:mod:`cloud.readiness`) reports the store down.

This module imports redis in :func:`redis_failures` only, when an ``except`` first matches
against it: a cloud on the memory store (the default) never imports redis (README "Tests": a
service imports only what its start needs); one on a Redis store imported it to build the
store.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from cloud.errors import StoreUnavailable

P = ParamSpec("P")
R = TypeVar("R")


@functools.cache
def redis_failures() -> tuple[type[Exception], ...]:
    """What a store call raises when Redis does not answer: Redis's errors and socket
    errors. An ``except redis_failures():`` clause calls this only when it meets an
    exception."""
    import redis

    return (redis.RedisError, OSError)


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that the Redis client turned into an error, or swallowed.

    redis-py answers a cancellation that lands in the middle of a command with a
    ``ConnectionError`` (the ``CancelledError`` is its cause), and sometimes with
    no error at all. A loop that catches store errors to keep going then never
    ended: a cancelled background task kept sleeping and retrying, and the
    server's shutdown waited on it for ever. Every long-running task that calls
    the store checks this after each call, before it waits for the next round.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def translated(fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """``fn`` with Redis and socket errors raised as :class:`StoreUnavailable`."""

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except redis_failures() as exc:
            raise_if_cancelling()
            raise StoreUnavailable(f"the store does not answer ({exc})") from exc

    return call
