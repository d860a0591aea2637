"""The cloud's listening socket, bounded.

Before: ~20,000 idle TLS connections exhausted the cloud's descriptors
(``/healthz`` and registration failed) and partial request lines stayed
open. Here every accepted connection must be admitted by the cloud's
:class:`~edge.admission.Admission` (a total and a per-source-address cap,
refusals counted on ``/metrics``), a TLS handshake must finish within
``limits.handshake_s``, and a connection that has not sent a whole request for
``limits.idle_s`` (silent, or stuck in a partial request line) is closed by
aiohttp's keep-alive timer, which runs from the moment of accept.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from cloud.settings import CloudSettings
from edge.admission import Admission
from edge.flags import YEAR_S

log = logging.getLogger(__name__)


class GatedHandler(RequestHandler):
    """aiohttp's per-connection protocol, admitted by source address first."""

    def __init__(self, manager: web.Server, admission: Admission, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._admission = admission
        self._source: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        source = str(peer[0]) if peer else ""
        super().connection_made(transport)
        if self._admission.admit(source):
            self._source = source
        else:
            log.debug("refusing a connection from %s: too many open", source)
            cast(asyncio.Transport, transport).abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._source is not None:
            self._admission.release(self._source)
            self._source = None
        super().connection_lost(exc)


async def listen(runner: web.AppRunner, settings: CloudSettings, port: int,
                 ssl_context: ssl.SSLContext | None, admission: Admission) -> asyncio.Server:
    """Serve ``runner``'s application on ``settings.listen``:``port`` within the bounds."""
    loop = asyncio.get_running_loop()
    server = runner.server
    if server is None:
        raise RuntimeError("call runner.setup() first")
    no_log = cast(logging.Logger, None)  # aiohttp: access_log=None turns access logging off
    limits = settings.limits

    def factory() -> GatedHandler:
        return GatedHandler(server, admission, loop=loop, keepalive_timeout=limits.idle_s,
                            access_log=no_log)

    # a handshake limit of 0 is none: asyncio takes only a positive one, so the longest
    handshake_s = limits.handshake_s or YEAR_S
    return await loop.create_server(
        factory, settings.listen, port, ssl=ssl_context, reuse_address=True, backlog=1024,
        ssl_handshake_timeout=handshake_s if ssl_context is not None else None)
