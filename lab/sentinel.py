"""Redis with a replica and three Sentinels, for the lab stack's ``--sentinel``.

A primary, one replica (``replicaof``) and three Sentinels (Debian's
redis-sentinel) on loopback ports chosen free, their files in the state
directory. The Sentinels agree (quorum 2) that the primary is down once it has
not answered for ``down_after_ms`` and promote the replica; the cloud finds the
current primary through them (``redis+sentinel://`` store URL,
:mod:`cloud.redis_sentinel`).

The configuration is written here and started by :mod:`lab.stack`; this module
also says when the group is whole (:func:`whole`): every Sentinel knows the
primary, the replica and the two other Sentinels, and the replica is in sync.
Before that, a primary killed would not be failed over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis

from wire.address import Address

SERVICE: Final = "pinhole"
QUORUM: Final = 2
DEBIAN_PACKAGE: Final = "redis-sentinel"


@dataclass(frozen=True, slots=True)
class Timing:
    """How soon a silent primary is failed over (milliseconds)."""

    down_after_ms: int = 1000
    failover_timeout_ms: int = 3000


def server_args(listen: Address, directory: str, name: str,
                primary: Address | None = None) -> list[str]:
    """redis-server's arguments: no persistence (the lab's store lives as long as the
    stack), a replica of ``primary`` when given."""
    args = ["--port", str(listen.port), "--bind", listen.host, "--save", "",
            "--appendonly", "no", "--dir", directory, "--dbfilename", f"{name}.rdb"]
    if primary is not None:  # announced as it listens, not as its connections come from
        args += ["--replicaof", primary.host, str(primary.port),
                 "--replica-announce-ip", listen.host]
    return args


def sentinel_config(listen: Address, primary: Address, directory: str,
                    timing: Timing = Timing()) -> str:
    """One Sentinel's configuration file (the Sentinel rewrites it as it learns)."""
    return "\n".join([
        f"port {listen.port}",
        f"bind {listen.host}",
        f"dir {directory}",
        "protected-mode no",
        f"sentinel announce-ip {listen.host}",  # as it listens: a 127.x.y.1 of the stack
        f"sentinel monitor {SERVICE} {primary.host} {primary.port} {QUORUM}",
        f"sentinel down-after-milliseconds {SERVICE} {timing.down_after_ms}",
        f"sentinel failover-timeout {SERVICE} {timing.failover_timeout_ms}",
        f"sentinel parallel-syncs {SERVICE} 1",
        "",
    ])


def store_url(sentinels: Sequence[Address], service: str = SERVICE, db: int = 0) -> str:
    """The cloud's ``--store`` for these Sentinels."""
    return (f"redis+sentinel://{','.join(str(s) for s in sentinels)}/{service}/{db}")


async def whole(sentinels: Sequence[Address], replica: Address) -> str:
    """``""`` once every Sentinel sees the primary, the replica and the others and the
    replica is in sync; else what is still missing."""
    for s in sentinels:
        client = aioredis.Redis(host=s.host, port=s.port, socket_timeout=1.0,
                                decode_responses=True)
        try:
            others: Any = await client.sentinel_sentinels(SERVICE)
            replicas: Any = await client.sentinel_slaves(SERVICE)
        except aioredis.RedisError as exc:
            return f"sentinel {s} does not answer ({exc})"
        finally:
            await client.aclose()
        if sum(not o.get("is_sdown") for o in others) < len(sentinels) - 1:
            return f"sentinel {s} does not see the other sentinels yet"
        if not any(r.get("port") == replica.port and not r.get("is_sdown") for r in replicas):
            return f"sentinel {s} does not see the replica {replica} yet"
    client = aioredis.Redis(host=replica.host, port=replica.port, socket_timeout=1.0,
                            decode_responses=True)
    try:
        info = await client.info("replication")
    except aioredis.RedisError as exc:
        return f"the replica {replica} does not answer ({exc})"
    finally:
        await client.aclose()
    if info.get("master_link_status") != "up":
        return f"the replica {replica} is not in sync yet"
    return ""
