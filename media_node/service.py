"""Wire the node together: engine, listeners, TLS certificate, metrics, control channel."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import signal
import ssl
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar, cast

from aiohttp import web
from prometheus_client.registry import CollectorRegistry

from media_node.control import ControlChannel, RegistrationRefused
from media_node.engine import Engine
from media_node.listeners import bind_stream, bind_udp
from media_node.metrics import EngineCollector, RelayTiming, make_app
from media_node.settings import NodeSettings
from wire.models import Endpoint, RungName
from wire.tls import cert_fingerprint, issue, server_context
from wire.transports import TCP_5004, TLS_443, UDP_5004, UDP_9000, UDP_33434

log = logging.getLogger("media_node")
_T = TypeVar("_T")


def _tls_context(settings: NodeSettings, workdir: Path) -> tuple[ssl.SSLContext, str]:
    """The TLS context and its certificate's SHA-256 fingerprint (published in the node list)."""
    if settings.cert:
        cert_file, key_file = settings.cert, settings.key or settings.cert
    else:
        now = datetime.datetime.now(datetime.UTC)
        made = issue(None, [settings.advertise], now)
        cert_file, key_file = str(workdir / "node.pem"), str(workdir / "node.key")
        Path(cert_file).write_bytes(made.cert_pem)
        Path(key_file).write_bytes(made.key_pem)
        Path(key_file).chmod(0o600)
    return server_context(cert_file, key_file), cert_fingerprint(Path(cert_file).read_bytes())


async def _bind_with_fallback(
    bind: Callable[[int], Awaitable[_T]], port: int, what: str
) -> _T:
    """Bind ``port``; below 1024 without the privilege, say so and take the documented high port."""
    try:
        return await bind(port)
    except PermissionError:
        high = 8443 if port == 443 else port + 8000
        log.warning("may not bind %s port %d here; taking %d instead", what, port, high)
        return await bind(high)


async def start_listeners(
    settings: NodeSettings, engine: Engine, workdir: Path, timing: RelayTiming | None = None
) -> tuple[list[Endpoint], str | None, list[asyncio.BaseTransport | asyncio.Server]]:
    host, delay = settings.bind, settings.simulated_rtt_ms / 1000
    endpoints: list[Endpoint] = []
    closers: list[asyncio.BaseTransport | asyncio.Server] = []
    fingerprint: str | None = None
    if settings.udp:
        udp = [(UDP_5004, settings.udp_port)]
        if settings.legacy_dc:
            udp.append((UDP_9000, settings.legacy_port))
        udp.append((UDP_33434, settings.udp_last_resort_port))
        for rung, port in udp:
            transport, real = await bind_udp(engine, host, port, rung.name, delay, timing)
            closers.append(transport)
            endpoints.append(Endpoint(rung=cast("RungName", rung.name), transport="udp", port=real))
    if settings.tcp:
        server, real = await bind_stream(engine, host, settings.tcp_port, TCP_5004.name, delay,
                                         None, timing=timing)
        closers.append(server)
        endpoints.append(Endpoint(rung="tcp/5004", transport="tcp", port=real))
    if settings.tls:
        context, fingerprint = _tls_context(settings, workdir)

        async def bind_tls(port: int) -> tuple[asyncio.Server, int]:
            return await bind_stream(engine, host, port, TLS_443.name, delay, context,
                                     timing=timing)

        tls_server, real = await _bind_with_fallback(bind_tls, settings.tls_port, "TLS")
        closers.append(tls_server)
        endpoints.append(Endpoint(rung="tls/443", transport="tls", port=real))
    return endpoints, fingerprint, closers


async def _ticks(engine: Engine) -> None:
    while True:
        await asyncio.sleep(1.0)
        engine.tick(time.monotonic())


async def run(settings: NodeSettings) -> int:
    if not (settings.udp or settings.tcp or settings.tls):
        print("pinhole-media-node: --no-udp, --no-tcp and --no-tls leave nothing to serve; "
              "drop one of them", file=sys.stderr)
        return 2
    engine = Engine(settings.node_id or "media-node", capacity=settings.capacity,
                    consent_s=settings.consent_s, leg_timeout_s=settings.leg_timeout_s,
                    stun_rate=settings.stun_rate, stun_burst=settings.stun_burst)
    with tempfile.TemporaryDirectory(prefix="pinhole-node-") as tmp:
        try:
            registry = CollectorRegistry(auto_describe=True)
            endpoints, fingerprint, closers = await start_listeners(
                settings, engine, Path(tmp), RelayTiming(registry))
        except OSError as exc:
            print(f"pinhole-media-node: cannot listen on {settings.bind}: {exc}; pick other "
                  "ports with --udp-port/--tcp-port/--tls-port or another --listen address",
                  file=sys.stderr)
            return 2
        for e in endpoints:
            log.info("listening on %s %s:%d", e.rung, settings.bind, e.port)
        control = ControlChannel(settings, engine, endpoints, fingerprint)
        runner: web.AppRunner | None = None
        if settings.metrics_listen:
            mhost, _, mport = settings.metrics_listen.rpartition(":")
            registry.register(EngineCollector(engine, lambda: control.connected))
            runner = web.AppRunner(make_app(engine, lambda: control.connected, registry),
                                   access_log=None)
            await runner.setup()
            await web.TCPSite(runner, mhost, int(mport)).start()
            log.info("metrics on http://%s/metrics", settings.metrics_listen)
        registered = asyncio.Event()
        channel = asyncio.create_task(control.run_forever(registered))
        ticks = asyncio.create_task(_ticks(engine))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        waiter = asyncio.create_task(registered.wait())
        stopper = asyncio.create_task(stop.wait())
        code = 0
        # a signal stops the node at any time, also while the cloud is still unreachable
        done, _ = await asyncio.wait({waiter, channel, stopper},
                                     return_when=asyncio.FIRST_COMPLETED)
        if waiter in done and not stopper.done():
            if settings.state_file:
                Path(settings.state_file).write_text(json.dumps({
                    "node_id": control.node_id, "fingerprint": fingerprint,
                    "endpoints": [e.model_dump() for e in endpoints],
                }))
            done, _ = await asyncio.wait({stopper, channel}, return_when=asyncio.FIRST_COMPLETED)
        if channel in done and not channel.cancelled() and channel.exception() is not None:
            print(f"pinhole-media-node: {channel.exception()}", file=sys.stderr)
            code = 2
        log.info("stopping")
        for task in (channel, ticks, waiter, stopper):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RegistrationRefused):
                await task
        for closer in closers:
            closer.close()
        if runner is not None:
            await runner.cleanup()
    return code
