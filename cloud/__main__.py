"""``pinhole-cloud`` / ``python -m cloud``: run the cloud API over HTTPS."""

from __future__ import annotations

import asyncio
import contextlib
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

from cloud.app import make_app
from cloud.identity import IdentityError, TokenSigner, load_orgs
from cloud.settings import CloudSettings, parse
from cloud.store import Store, open_store
from wire import boundary
from wire.boundary import run, usage
from wire.tls import server_context

log = logging.getLogger("cloud")


def _write_state(path: str, state: dict[str, object]) -> None:
    Path(path).write_text(json.dumps(state))


async def _bind(runner: web.AppRunner, settings: CloudSettings,
                ssl_context: ssl.SSLContext | None) -> int:
    """Bind the HTTPS port (443 → 8443 when this process may not); the port in use."""
    port = settings.port
    try:
        try:
            await web.TCPSite(runner, settings.listen, port, ssl_context=ssl_context).start()
        except PermissionError:
            port = 8443 if port == 443 else port + 8000
            log.warning("may not bind port %d here; taking %d instead", settings.port, port)
            await web.TCPSite(runner, settings.listen, port, ssl_context=ssl_context).start()
    except OSError as exc:
        raise usage(f"cannot listen on {settings.listen}:{port}: "
                    f"{(exc.strerror or str(exc)).lower()}",
                    "choose another --port or --listen address") from None
    return port


async def wait_for_store(store: Store, name: str, stop: asyncio.Event,
                         max_backoff_s: float = 30.0) -> bool:
    """Until the store answers (True) or ``stop`` is set (False); one line per backoff step."""
    backoff, attempt = 0.5, 1
    while not await store.ping():
        log.warning("store %s unreachable (attempt %d); not ready, retrying in %.1f s",
                    name, attempt, backoff)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff)
        if stop.is_set():
            return False
        backoff, attempt = min(backoff * 2, max_backoff_s), attempt + 1
    return True


async def serve(settings: CloudSettings) -> None:
    try:
        orgs = load_orgs(settings.orgs) if settings.orgs else {}
    except IdentityError as exc:
        raise usage(str(exc), "fix the file given to --orgs") from None
    store = open_store(settings.store)
    app = make_app(settings, store, orgs, TokenSigner(settings.token_key))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
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
        port = await _bind(runner, settings, ssl_context)
        scheme = "https" if ssl_context else "http"
        url = f"{scheme}://{settings.listen}:{port}"
        # /healthz and /readyz (503) answer meanwhile; "listening" only once it can serve
        if await wait_for_store(store, settings.store, stop):
            log.info("cloud listening on %s with %d organisation(s)", url, len(orgs))
            if settings.state_file:
                _write_state(settings.state_file, {"url": url, "port": port})
            await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """The error boundary: a failure is one line and an exit code of :mod:`wire.boundary`."""
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
