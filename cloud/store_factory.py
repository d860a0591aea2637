"""Opening the store a ``PINHOLE_STORE`` URL names.

Apart from :mod:`cloud.store` so that the interface does not import its
backends: :mod:`cloud.redis_store` imports the interface, never the reverse.
"""

from __future__ import annotations

from cloud import redis_sentinel
from cloud.redis_store import RedisStore
from cloud.store import DEFAULT_RETENTION, MemoryStore, Retention, Store

SCHEMES = ("redis://", "rediss://", "unix://", redis_sentinel.SCHEME)


def open_store(url: str, retention: Retention = DEFAULT_RETENTION) -> Store:
    """The backend named by ``PINHOLE_STORE``: ``memory``, ``redis://host:port/db`` or
    ``redis+sentinel://host:port,host:port,host:port/service/db``."""
    if url in ("", "memory"):
        return MemoryStore(retention=retention)
    if url.startswith(SCHEMES):
        return RedisStore(url, retention)
    raise ValueError(f"unsupported store {url!r}: use 'memory', redis://host:port/db or "
                     "redis+sentinel://host:port,host:port,host:port/service/db")
