"""A real headless browser for tests: Debian's ``chromium-headless-shell``, driven over the
Chrome DevTools Protocol on ``--remote-debugging-pipe`` (JSON messages ending in a NUL byte,
commands on the browser's fd 3, answers and events on its fd 4).

Only what the console's tests need: open a page, evaluate JavaScript, wait for a condition,
take a screenshot. The browser trusts exactly one extra certificate key (the cloud's, by its
SPKI hash; or a few, comma-separated), nothing else.

A pipe, not a port: the browser may run under a ``wrapper`` such as ``ip netns exec NS``, in
a network namespace whose loopback the test cannot reach, and the inherited pipe still joins
the two; nor can another local process drive it.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import fcntl
import functools
import itertools
import json
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from tests.prereqs import require_tool

#: the browser's ends of the DevTools pipe (Chromium's fixed numbers for --remote-debugging-pipe)
BROWSER_IN, BROWSER_OUT = 3, 4
MESSAGE_LIMIT = 64 << 20  # a full-page screenshot, base64


class BrowserError(Exception):
    """The browser reported an error, or a condition never came true."""


class _Pipe:
    """The test's ends of the DevTools pipe: one JSON message per NUL-terminated chunk."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.WriteTransport,
                 said: collections.deque[str]) -> None:
        self._reader, self._writer, self._said = reader, writer, said

    def send(self, message: dict[str, Any]) -> None:
        self._writer.write(json.dumps(message).encode() + b"\0")

    async def receive(self) -> dict[str, Any]:
        try:
            chunk = await self._reader.readuntil(b"\0")
        except asyncio.IncompleteReadError:
            raise BrowserError("the browser closed its DevTools pipe; it last said: "
                               + " | ".join(self._said)) from None
        message: dict[str, Any] = json.loads(chunk[:-1])
        return message


class Page:
    def __init__(self, pipe: _Pipe, session: str) -> None:
        self._pipe = pipe
        self._session = session
        self._ids = itertools.count(1000)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        return await _call(self._pipe, self._ids, method, params, self._session)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'")

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                                 awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 15.0) -> Any:
        """Evaluate ``expression`` until it is truthy; its value."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            with contextlib.suppress(BrowserError):
                value = await self.evaluate(expression)
                if value:
                    return value
            if asyncio.get_running_loop().time() > deadline:
                raise BrowserError(f"never true within {timeout_s} s: {expression}")
            await asyncio.sleep(0.1)

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))


async def _call(pipe: _Pipe, ids: itertools.count[int], method: str, params: dict[str, Any],
                session: str | None = None) -> dict[str, Any]:
    message_id = next(ids)
    message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
    if session is not None:
        message["sessionId"] = session
    pipe.send(message)
    while True:  # events (no "id") and other answers are skipped
        answer = await asyncio.wait_for(pipe.receive(), 30)
        if answer.get("id") == message_id:
            if "error" in answer:
                raise BrowserError(f"{method}: {answer['error']}")
            result: dict[str, Any] = answer.get("result", {})
            return result


def _browser_ends(inbound: int, outbound: int) -> None:
    """In the child, before exec: its pipe ends become fds 3 and 4 (through high numbers
    first, so that neither overwrites the other)."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (inbound, outbound)]
    for fd, number in zip(high, (BROWSER_IN, BROWSER_OUT), strict=True):
        os.dup2(fd, number)
        os.close(fd)


@contextlib.asynccontextmanager
async def headless_page(*, trust_spki: str | None = None, size: tuple[int, int] = (1400, 1000),
                        extra_args: Sequence[str] = (),
                        wrapper: Sequence[str] = ()) -> AsyncIterator[Page]:
    """A fresh browser profile and one page in it; everything is gone afterwards.
    ``extra_args``: more Chromium flags (the fake camera and microphone, say); ``wrapper``: a
    command prefix the browser runs under (``ip netns exec NS``: inside a network namespace)."""
    binary = require_tool("chromium-headless-shell")
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="pinhole-browser-") as profile, \
            contextlib.ExitStack() as owned:
        args = [*wrapper, binary, "--remote-debugging-pipe", f"--user-data-dir={profile}",
                "--no-sandbox", "--disable-gpu", "--no-first-run",
                f"--window-size={size[0]},{size[1]}", *extra_args, "about:blank"]
        if trust_spki:
            args.insert(len(wrapper) + 1, f"--ignore-certificate-errors-spki-list={trust_spki}")
        to_browser, from_test = os.pipe()
        from_browser, to_test = os.pipe()
        # the test's ends as files at once: whatever fails below, they are closed on the way out
        inbound = owned.enter_context(os.fdopen(from_browser, "rb", 0))
        outbound = owned.enter_context(os.fdopen(from_test, "wb", 0))
        try:
            proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, pass_fds=(BROWSER_IN, BROWSER_OUT),
                preexec_fn=functools.partial(_browser_ends, to_browser, to_test),
                start_new_session=True)  # its own process group: the zygote and GPU helpers too
        finally:
            os.close(to_browser)
            os.close(to_test)
        said: collections.deque[str] = collections.deque(maxlen=5)
        reader = asyncio.StreamReader(limit=MESSAGE_LIMIT)
        transports: list[asyncio.BaseTransport] = []
        drain: asyncio.Task[None] | None = None
        try:
            transports.append((await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), inbound))[0])
            writer, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, outbound)
            transports.append(writer)
            assert proc.stderr is not None
            drain = asyncio.create_task(_drain(proc.stderr, said))
            pipe = _Pipe(reader, writer, said)
            ids = itertools.count(1)
            target = await _call(pipe, ids, "Target.createTarget", {"url": "about:blank"})
            attached = await _call(pipe, ids, "Target.attachToTarget",
                                   {"targetId": target["targetId"], "flatten": True})
            page = Page(pipe, attached["sessionId"])
            await page.send("Page.enable")
            await page.send("Runtime.enable")
            yield page
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # helpers hold the pipes open otherwise
            await proc.wait()
            for transport in transports:
                transport.close()
            if drain is not None:
                drain.cancel()


async def _drain(stream: asyncio.StreamReader, said: collections.deque[str]) -> None:
    """Read the browser's log so that a full pipe never blocks it; keep its last lines."""
    while chunk := await stream.read(65536):
        said.extend(line for line in chunk.decode(errors="replace").splitlines() if line)
