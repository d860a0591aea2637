"""The join's Redis scripts, pipelined on one connection of their own.

A join is two Redis round trips (``cloud.redis_store``): the lock's script and
the commit's. Through redis-py's client each cost 57 µs of the cloud's CPU (its
blocking pool's wait with a timeout, the retry wrapper, argument filters, a
Protocol ``isinstance`` per script call, its Python RESP packer), and every
join paid its own socket write, wake-up and read. :class:`ScriptRunner` sends
``EVALSHA`` itself on one connection: the commands of every join started in
the same turn of the event loop leave in one write, and the answers, which
Redis sends in the order it got the commands, come back in one read parsed by
hiredis and go to their callers in that order (pipelining, as the Redis
documentation describes it; auto-pipelining, as Redis clients that do it
unasked call it).

- A caller that is cancelled while it waits does not upset the order: its
  answer is read and dropped.
- A lost connection fails every command waiting on it with redis-py's
  ``ConnectionError`` (the store makes that ``StoreUnavailable``); the next
  command connects again.
- A server that says ``NOSCRIPT`` (a new or flushed server) gets the script
  (``SCRIPT LOAD``) and the command again.
- With Sentinel the runner is given ``locate``, which names the current primary
  each time it connects; a server that says ``READONLY`` (a primary demoted
  since) fails the command and drops the connection, so the next command
  connects to the primary the Sentinels name then.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError

from wire.address import Address

Locate = Callable[[], Awaitable[Address]]


def pack(command: tuple[str | int, ...]) -> bytes:
    """``command`` in RESP, one bulk string per argument (the Redis protocol
    specification, "Sending commands to a Redis server")."""
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


class _Pipe(asyncio.Protocol):
    """One connection: commands out in order, answers back to their futures in order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.closed = False
        self._reader = hiredis.Reader(encoding="utf-8")
        self._out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport
        self.transport = cast(asyncio.Transport, transport)

    def send(self, command: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.closed:
            future.set_exception(RedisConnectionError("connection to Redis lost"))
            return future
        if not self._out:  # the first command of this turn: written at its end
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(command)
        self.waiting.append(future)
        return future

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.transport is not None and not self.closed:
            self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        while True:
            try:
                answer = reader.gets()
            except hiredis.ProtocolError:  # not RESP: nothing after it can be trusted
                self.close()  # connection_lost fails every waiting command
                return
            if answer is False:
                return
            if not self.waiting:  # an answer nobody asked for: the stream is not Redis's
                self.close()
                return
            future = self.waiting.popleft()
            if future.done():  # its caller was cancelled: the answer is dropped
                continue
            if isinstance(answer, hiredis.ReplyError):
                text = str(answer)
                if text.startswith("READONLY"):  # a demoted primary: connect again
                    future.set_exception(ReadOnlyError(text))
                    self.close()
                    return
                future.set_exception(NoScriptError(text) if text.startswith("NOSCRIPT")
                                     else ResponseError(text))
            else:
                future.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = RedisConnectionError(f"connection to Redis lost ({exc or 'closed'})")
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class ScriptRunner:
    """Runs scripts on a pipelined connection to the store's Redis (same URL: host and
    port, a Unix socket, TLS with ``rediss://``, a password and a database); with
    ``locate``, on the host and port it names at each connection (the primary the
    Sentinels name)."""

    def __init__(self, url: str, locate: Locate | None = None) -> None:
        self._options: dict[str, Any] = dict(parse_url(url))
        self._locate = locate
        self._pipe: _Pipe | None = None
        self._connecting = asyncio.Lock()

    async def run(self, script: Script, keys: list[str], args: list[str | int]) -> Any:
        """The script's answer; redis-py's errors (``ConnectionError``, ``ResponseError``)."""
        command = pack(("EVALSHA", script.sha, len(keys), *keys, *args))
        pipe = await self._connected()
        try:
            return await pipe.send(command)
        except NoScriptError:  # a new (or flushed) server: load it, once
            await pipe.send(pack(("SCRIPT", "LOAD", script.text)))
            return await pipe.send(command)

    async def _connected(self) -> _Pipe:
        pipe = self._pipe
        if pipe is not None and not pipe.closed:
            return pipe
        async with self._connecting:
            if self._pipe is None or self._pipe.closed:
                self._pipe = await self._connect()
            return self._pipe

    async def _connect(self) -> _Pipe:
        o = self._options
        loop = asyncio.get_running_loop()
        kind = o.get("connection_class")
        try:
            if kind is UnixDomainSocketConnection:
                _, pipe = await loop.create_unix_connection(_Pipe, o["path"])
            else:
                host, port = o.get("host", "localhost"), o.get("port", 6379)
                if self._locate is not None:
                    host, port = await self._locate()
                context = ssl.create_default_context() if kind is SSLConnection else None
                _, pipe = await loop.create_connection(_Pipe, host, port, ssl=context)
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
        hello: list[asyncio.Future[Any]] = []
        if o.get("password"):
            auth = ("AUTH", o["username"], o["password"]) if o.get("username") \
                else ("AUTH", o["password"])
            hello.append(pipe.send(pack(auth)))
        if o.get("db"):
            hello.append(pipe.send(pack(("SELECT", o["db"]))))
        try:
            for answer in hello:
                await answer
        except BaseException:
            pipe.close()
            raise
        return pipe

    async def close(self) -> None:
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
