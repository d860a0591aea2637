"""Opening the store a ``PINHOLE_STORE`` URL names.

Apart from :mod:`cloud.store` so that the interface does not import its
backends: :mod:`cloud.redis_store` imports the interface, never the reverse.
The Redis backend (and redis with it) is imported when a Redis store is opened: a
cloud on the memory store, the default, never imports it (README "Tests": a service
imports only what its start needs).
"""

from __future__ import annotations

from cloud.store import DEFAULT_RETENTION, MemoryStore, Retention, Store

# redis_sentinel.SCHEME last, spelt out: importing that module imports redis
SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://")


def open_store(url: str, retention: Retention = DEFAULT_RETENTION) -> Store:
    """The backend named by ``PINHOLE_STORE``: ``memory``, ``redis://host:port/db`` or
    ``redis+sentinel://host:port,host:port,host:port/service/db``."""
    if url in ("", "memory"):
        return MemoryStore(retention=retention)
    if url.startswith(SCHEMES):
        from cloud.redis_store import RedisStore

        return RedisStore(url, retention)
    raise ValueError(f"unsupported store {url!r}: use 'memory', redis://host:port/db or "
                     "redis+sentinel://host:port,host:port,host:port/service/db")
