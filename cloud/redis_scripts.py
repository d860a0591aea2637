"""The join's Redis scripts, run over connections of their own.

A join is two Redis round trips (``cloud.redis_store``): the lock's script and
the commit's. Through redis-py's client each cost 57 µs of the cloud's CPU
(its blocking pool's wait with a timeout, the retry wrapper, argument filters,
a Protocol ``isinstance`` per script call), where packing the command, sending
it and reading the answer on a connection costs 27 µs (same machine, same
script). So these two scripts skip that path: :class:`ScriptRunner` keeps a
few redis-py connections (same URL, same parser, same errors) and runs
``EVALSHA`` on them directly, loading a script the first time a server says
``NOSCRIPT``.

A connection whose command did not end with a whole answer (an error on the
socket, or the caller cancelled while it waited) is dropped, never reused: its
answer would be read by the next command.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from redis.asyncio.connection import Connection, parse_url
from redis.exceptions import NoScriptError

MAX_IDLE = 32  # connections kept between commands; more may be open under a burst


def pack(command: tuple[str | int, ...]) -> bytes:
    """``command`` in RESP, one bulk string per argument (the Redis protocol
    specification, "Sending commands to a Redis server"); a third of what
    redis-py's general ``pack_command`` costs for a commit's dozen arguments."""
    out = [b"*%d\r\n" % len(command)]
    for arg in command:
        data = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Script:
    """A Lua script and its SHA1, as ``EVALSHA`` names it."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


class ScriptRunner:
    def __init__(self, url: str, max_connections: int) -> None:
        self._kwargs: dict[str, Any] = dict(parse_url(url))
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def run(self, script: Script, keys: list[str], args: list[str | int]) -> Any:
        """The script's answer; redis-py's errors (``ConnectionError``, ``ResponseError``)
        as its client raises them."""
        async with self._slots:
            connection = self._idle.pop() if self._idle else Connection(
                decode_responses=True, **self._kwargs)
            try:
                try:
                    answer = await self._call(connection, "EVALSHA", script.sha, len(keys),
                                              *keys, *args)
                except NoScriptError:  # a new (or flushed) server: load it, once
                    await self._call(connection, "SCRIPT", "LOAD", script.text)
                    answer = await self._call(connection, "EVALSHA", script.sha, len(keys),
                                              *keys, *args)
            except BaseException:
                await connection.disconnect(nowait=True)
                raise
            if len(self._idle) < MAX_IDLE:
                self._idle.append(connection)
            else:
                await connection.disconnect(nowait=True)
            return answer

    @staticmethod
    async def _call(connection: Connection, *command: str | int) -> Any:
        if not connection.is_connected:
            await connection.connect()  # type: ignore[no-untyped-call]
        await connection.send_packed_command(pack(command), check_health=False)
        return await connection.read_response()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect(nowait=True)
