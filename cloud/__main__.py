"""``pinhole-cloud`` / ``python -m cloud``: run the cloud API over HTTPS."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop
from aiohttp import web

from cloud.app import READINESS, make_app
from cloud.connections import listen
from cloud.errors import IdentityError
from cloud.identity import TokenSigner, load_orgs
from cloud.readiness import StoreWatch
from cloud.settings import CloudSettings, parse
from cloud.state import CLOUD
from cloud.store import Retention
from cloud.store_factory import open_store
from edge import boundary, heap
from edge.boundary import run, usage
from wire.tls import server_context

log = logging.getLogger("cloud")


def _write_state(path: str, state: dict[str, object]) -> None:
    Path(path).write_text(json.dumps(state))


async def _bind(runner: web.AppRunner, settings: CloudSettings,
                ssl_context: ssl.SSLContext | None) -> asyncio.Server:
    """Bind the HTTPS port (443 → 8443 when this process may not), within the connection
    bounds of :mod:`cloud.connections`."""
    port = settings.port
    admission = runner.app[CLOUD].connections
    try:
        try:
            return await listen(runner, settings, port, ssl_context, admission)
        except PermissionError:
            port = 8443 if port == 443 else port + 8000
            log.warning("may not bind port %d here; taking %d instead", settings.port, port)
            return await listen(runner, settings, port, ssl_context, admission)
    except OSError as exc:
        raise usage(f"cannot listen on {settings.listen}:{port}: "
                    f"{(exc.strerror or str(exc)).lower()}",
                    "choose another --port or --listen address") from None


async def wait_for_store(watch: StoreWatch, stop: asyncio.Event) -> bool:
    """Until the store answers (True) or ``stop`` is set (False). The watch pings it with
    backoff and logs one line per step; it keeps watching after start-up, for ``/readyz``."""
    ready = asyncio.ensure_future(watch.ready_event.wait())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for task in (ready, stopped):
        task.cancel()
    return watch.ready


async def serve(settings: CloudSettings) -> None:
    try:
        orgs = load_orgs(settings.orgs) if settings.orgs else {}
    except IdentityError as exc:
        raise usage(str(exc), "fix the file given to --orgs") from None
    store = open_store(settings.store, Retention(calls_s=settings.metrics_retention_s))
    app = make_app(settings, store, orgs, TokenSigner(settings.token_key))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    heap.settle()  # what start-up built is never walked again by the collector
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            ssl_context = server_context(settings.cert, settings.key) if settings.cert else None
        except (ssl.SSLError, ValueError) as exc:
            raise usage(f"--cert {settings.cert} / --key {settings.key}: not a PEM certificate "
                        f"and its private key ({exc})", "check both files") from None
        server = await _bind(runner, settings, ssl_context)
        port = int(server.sockets[0].getsockname()[1])
        scheme = "https" if ssl_context else "http"
        url = f"{scheme}://{settings.listen}:{port}"
        # /healthz and /readyz (503) answer meanwhile; "listening" only once it can serve
        if await wait_for_store(app[READINESS], stop):
            log.info("cloud listening on %s with %d organisation(s)", url, len(orgs))
            if settings.state_file:
                _write_state(settings.state_file, {"url": url, "port": port})
            await stop.wait()
        log.info("stopping")
        server.close()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """The error boundary: a failure is one line and an exit code of :mod:`edge.boundary`."""
    raw = list(sys.argv[1:] if argv is None else argv)

    def body() -> int:
        settings = parse(raw)
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
        log.info("settings %s", settings.masked())
        if not settings.cert:
            log.warning("no --cert: serving plain HTTP (development only)")
        uvloop.run(serve(settings))
        return 0

    return run("pinhole-cloud", body, as_json=lambda: False, out=sys.stdout, err=sys.stderr,
               traceback_wanted=boundary.traceback_wanted(os.environ))


if __name__ == "__main__":
    sys.exit(main())
