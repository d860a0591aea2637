"""The device's events WebSocket client (the ``websockets`` package) against a peer that
misbehaves: a malformed event is dropped and counted, the stream goes on; a peer that
stops answering pings is left ("a hung cloud is detected", "ping/pong deadlines").
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from websockets.exceptions import ConnectionClosedError

from client.api import CloudApi

pytestmark = pytest.mark.slow
Handler = Callable[[web.Request], Awaitable[web.WebSocketResponse]]


@contextlib.asynccontextmanager
async def _peer(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/v1/events", handler)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_a_malformed_event_is_dropped_and_counted() -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("{not json")
        await ws.send_str('{"type": "media.reassigned", "meeting_id": "m", "bogus": 1}')
        await ws.send_str('{"type": "probe.requested", "node_id": "n1"}')
        await ws.close()
        return ws

    async with _peer(handler) as url:
        api = CloudApi(url, None)
        events = [event async for event in api.events()]
    assert [(e.type, e.node_id) for e in events] == [("probe.requested", "n1")]
    assert api.malformed_events == 2
    await api.close()


async def test_a_peer_that_stops_answering_pings_is_left() -> None:
    """This peer sends one event, then answers no ping (``autoping=False``), as a hung
    (SIGSTOPped) cloud would not: the client fails the connection by its ping deadline."""
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)  # pings go unanswered
        await ws.prepare(request)
        await ws.send_str('{"type": "probe.requested", "node_id": "n1"}')
        await asyncio.sleep(30)
        return ws

    async with _peer(handler) as url:
        api = CloudApi(url, None)
        started = time.monotonic()
        seen = []
        with pytest.raises(ConnectionClosedError) as info:
            async for event in api.events():
                seen.append(event.type)
        ended = time.monotonic() - started
    assert seen == ["probe.requested"]
    assert "keepalive ping timeout" in str(info.value), info.value
    assert ended < 20  # left on its own, long before the peer's 30 s handler ends
    await api.close()
