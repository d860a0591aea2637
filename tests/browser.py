"""A real headless browser for tests: Debian's ``chromium-headless-shell``, driven over the
Chrome DevTools Protocol (a WebSocket, with aiohttp's client).

Only what the console's tests need: open a page, evaluate JavaScript, wait for a condition,
take a screenshot. The browser trusts exactly one extra certificate key (the cloud's, by its
SPKI hash), nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import signal
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from tests.prereqs import require_tool

DEVTOOLS = re.compile(rb"DevTools listening on (ws://\S+)")


class BrowserError(Exception):
    """The browser reported an error, or a condition never came true."""


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: str) -> None:
        self._ws = ws
        self._session = session
        self._ids = itertools.count(1000)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        return await _call(self._ws, self._ids, method, params, self._session)

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


async def _call(ws: aiohttp.ClientWebSocketResponse, ids: itertools.count[int], method: str,
                params: dict[str, Any], session: str | None = None) -> dict[str, Any]:
    message_id = next(ids)
    message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
    if session is not None:
        message["sessionId"] = session
    await ws.send_str(json.dumps(message))
    while True:  # events (no "id") and other answers are skipped
        answer = json.loads((await asyncio.wait_for(ws.receive(), 30)).data)
        if answer.get("id") == message_id:
            if "error" in answer:
                raise BrowserError(f"{method}: {answer['error']}")
            result: dict[str, Any] = answer.get("result", {})
            return result


@contextlib.asynccontextmanager
async def headless_page(*, trust_spki: str | None = None, size: tuple[int, int] = (1400, 1000),
                        extra_args: Sequence[str] = ()) -> AsyncIterator[Page]:
    """A fresh browser profile and one page in it; everything is gone afterwards.
    ``extra_args``: more Chromium flags (the fake camera and microphone, say)."""
    binary = require_tool("chromium-headless-shell")
    with tempfile.TemporaryDirectory(prefix="pinhole-browser-") as profile:
        args = [binary, "--remote-debugging-port=0", f"--user-data-dir={profile}",
                "--no-sandbox", "--disable-gpu", "--no-first-run",
                f"--window-size={size[0]},{size[1]}", *extra_args, "about:blank"]
        if trust_spki:
            args.insert(1, f"--ignore-certificate-errors-spki-list={trust_spki}")
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            start_new_session=True)  # its own process group: the zygote and GPU helpers too
        drain: asyncio.Task[None] | None = None
        try:
            assert proc.stderr is not None
            url = None
            async with asyncio.timeout(30):
                while url is None:
                    line = await proc.stderr.readline()
                    if not line:
                        raise BrowserError("chromium-headless-shell exited at start-up")
                    if match := DEVTOOLS.search(line):
                        url = match.group(1).decode()
            drain = asyncio.create_task(_drain(proc.stderr))
            async with aiohttp.ClientSession() as http, http.ws_connect(
                    url, max_msg_size=64 << 20) as ws:
                ids = itertools.count(1)
                target = await _call(ws, ids, "Target.createTarget", {"url": "about:blank"})
                attached = await _call(ws, ids, "Target.attachToTarget",
                                       {"targetId": target["targetId"], "flatten": True})
                page = Page(ws, attached["sessionId"])
                await page.send("Page.enable")
                await page.send("Runtime.enable")
                yield page
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # helpers hold the pipe open otherwise
            await proc.wait()
            if drain is not None:
                drain.cancel()


async def _drain(stream: asyncio.StreamReader) -> None:
    """Read the browser's log so that a full pipe never blocks it."""
    while await stream.read(65536):
        pass
