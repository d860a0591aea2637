"""``pinhole-cloud`` / ``python -m cloud``: run the cloud API over HTTPS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop
from aiohttp import web

from cloud.app import READINESS, make_app
from cloud.connections import listen
from cloud.identity import IdentityError, TokenSigner, load_orgs
from cloud.settings import CloudSettings, parse
from cloud.state import CLOUD
from cloud.store import Retention, open_store
from wire.tls import server_context

log = logging.getLogger("cloud")


def _write_state(path: str, state: dict[str, object]) -> None:
    Path(path).write_text(json.dumps(state))


async def serve(settings: CloudSettings) -> None:
    orgs = load_orgs(settings.orgs) if settings.orgs else {}
    store = open_store(settings.store, Retention(calls_s=settings.metrics_retention_s))
    app = make_app(settings, store, orgs, TokenSigner(settings.token_key))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    ssl_context = server_context(settings.cert, settings.key) if settings.cert else None
    port = settings.port
    admission = app[CLOUD].connections
    try:
        server = await listen(runner, settings, port, ssl_context, admission)
    except PermissionError:
        port = 8443 if port == 443 else port + 8000
        log.warning("may not bind port %d here; taking %d instead", settings.port, port)
        server = await listen(runner, settings, port, ssl_context, admission)
    port = int(server.sockets[0].getsockname()[1])
    scheme = "https" if ssl_context else "http"
    url = f"{scheme}://{settings.listen}:{port}"
    watch = app[READINESS]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(watch.checked.wait(), watch.ping_timeout_s + 1)
    if watch.ready:
        log.info("cloud listening on %s with %d organisation(s)", url, len(orgs))
    else:
        log.warning("cloud listening on %s but NOT READY: the store %s does not answer; "
                    "/readyz answers 503 and API calls 503 until it does", url, settings.store)
    if settings.state_file:
        _write_state(settings.state_file, {"url": url, "port": port})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    server.close()
    await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log.info("settings %s", settings.masked())
    if not settings.cert:
        log.warning("no --cert: serving plain HTTP (development only)")
    try:
        uvloop.run(serve(settings))
    except IdentityError as exc:
        print(f"pinhole-cloud: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
