"""Wire the node together: engine, listeners, TLS certificate, metrics, control channel.

:func:`start_node` takes the dialler its cascades are opened with, so a
hybrid node (``hybrid_node``) starts this same service with its own dialler
and adds nothing else; :meth:`RunningNode.serve_until_signal` serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import signal
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from aiohttp import web
from prometheus_client.registry import CollectorRegistry

from edge import heap
from edge.admission import Admission
from edge.boundary import describe, usage
from media_node.cascade import Dialler, cloud_dialler
from media_node.control import ControlChannel, EventOutbox, RegistrationRefused, new_node_id
from media_node.engine import Engine
from media_node.listeners import UdpListener, bind_stream, bind_udp
from media_node.metrics import EngineCollector, RelayTiming, make_app
from media_node.plane import load_plane
from media_node.settings import NodeSettings
from wire.dtls import DtlsCertificate
from wire.models import Endpoint
from wire.tls import cert_fingerprint, issue, server_context
from wire.transports import (
    TCP_5004,
    TCP_33434,
    TLS_443,
    UDP_5004,
    UDP_9000,
    UDP_33434,
    Rung,
)

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


def _endpoint(rung: Rung, port: int) -> Endpoint:
    return Endpoint(rung=rung.name, transport=rung.transport, port=port)


async def start_listeners(
    settings: NodeSettings, engine: Engine, workdir: Path, admission: Admission,
    timing: RelayTiming | None = None, clock: Callable[[], float] = time.monotonic
) -> tuple[list[Endpoint], str | None, list[UdpListener | asyncio.Server]]:
    """Bind the settings' ports for ``engine``; ``clock`` gives the engine its ``now``."""
    host, delay = settings.bind, settings.simulated_rtt_ms / 1000
    endpoints: list[Endpoint] = []
    closers: list[UdpListener | asyncio.Server] = []
    fingerprint: str | None = None
    if settings.udp:
        udp = [(UDP_5004, settings.udp_port)]
        if settings.legacy_dc:
            udp.append((UDP_9000, settings.legacy_port))
        udp.append((UDP_33434, settings.udp_last_resort_port))
        for rung, port in udp:
            try:
                listener = await bind_udp(engine, host, port, rung.name, delay, timing, clock)
            except OSError as exc:  # which port: one held on every address is not this one's
                raise OSError(exc.errno, f"{rung.name} (port {port}): {exc.strerror}") from exc
            closers.append(listener)
            endpoints.append(_endpoint(rung, listener.port))
    if settings.tcp:
        server, real = await bind_stream(engine, host, settings.tcp_port, TCP_5004.name, delay,
                                         None, admission, settings.limits,
                                         timing=timing, clock=clock)
        closers.append(server)
        endpoints.append(_endpoint(TCP_5004, real))
        try:  # content's second rung: a node without it still serves TCP 5004 and TLS
            server, real = await bind_stream(engine, host, settings.tcp_last_resort_port,
                                             TCP_33434.name, delay, None, admission,
                                             settings.limits, timing=timing, clock=clock)
        except OSError as exc:
            log.warning("cannot listen on TCP %s:%d (%s): content falls back to TLS",
                        host, settings.tcp_last_resort_port, exc.strerror or exc)
        else:
            closers.append(server)
            endpoints.append(_endpoint(TCP_33434, real))
    if settings.tls:
        context, fingerprint = _tls_context(settings, workdir)

        async def bind_tls(port: int) -> tuple[asyncio.Server, int]:
            return await bind_stream(engine, host, port, TLS_443.name, delay, context,
                                     admission, settings.limits, timing=timing,
                                     clock=clock)

        tls_server, real = await _bind_with_fallback(bind_tls, settings.tls_port, "TLS")
        closers.append(tls_server)
        endpoints.append(_endpoint(TLS_443, real))
    return endpoints, fingerprint, closers


def admission_for(settings: NodeSettings) -> Admission:
    """One admission for the TCP and TLS listeners together (the node's descriptors)."""
    return Admission.within(settings.limits)


async def _ticks(engine: Engine) -> None:
    while True:
        await asyncio.sleep(1.0)
        engine.tick(time.monotonic())


@dataclass(eq=False)
class RunningNode:
    """A started node: listening, its control channel connecting to the cloud.

    :func:`start_node` builds it; :meth:`serve_until_signal` runs it until
    SIGINT/SIGTERM (or a refusal by the cloud) and then stops everything it
    started. Tests and embedders call :meth:`stop` instead.
    """

    settings: NodeSettings
    engine: Engine
    control: ControlChannel
    endpoints: list[Endpoint]
    fingerprint: str | None
    closers: list[UdpListener | asyncio.Server]
    workdir: tempfile.TemporaryDirectory[str]
    runner: web.AppRunner | None = None
    registered: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def _start_tasks(self) -> None:
        self.tasks = [asyncio.create_task(self.control.run_forever(self.registered)),
                      asyncio.create_task(_ticks(self.engine))]

    async def wait_registered(self) -> None:
        """Return once the cloud accepted the registration; raise if the channel gave up."""
        channel = self.tasks[0]
        waiter = asyncio.create_task(self.registered.wait())
        await asyncio.wait({waiter, channel}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not self.registered.is_set():
            channel.result()  # raises RegistrationRefused with its message

    async def serve_until_signal(self) -> int:
        """Serve until SIGINT/SIGTERM (0); a channel that gave up is raised as a
        :class:`edge.boundary.Failure` (a refused registration is a usage failure)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        channel = self.tasks[0]
        waiter = asyncio.create_task(self.registered.wait())
        stopper = asyncio.create_task(stop.wait())
        # a signal stops the node at any time, also while the cloud is still unreachable
        done, _ = await asyncio.wait({waiter, channel, stopper},
                                     return_when=asyncio.FIRST_COMPLETED)
        if waiter in done and not stopper.done():
            self._write_state_file()
            done, _ = await asyncio.wait({stopper, channel}, return_when=asyncio.FIRST_COMPLETED)
        failure = None
        error = channel.exception() if channel in done and not channel.cancelled() else None
        if isinstance(error, RegistrationRefused):
            failure = usage(str(error), "fix the flag it names")
        elif error is not None:
            failure = describe(error)
        for task in (waiter, stopper):
            task.cancel()
        await self.stop()
        if failure is not None:
            raise failure
        return 0

    def _write_state_file(self) -> None:
        if self.settings.state_file:
            Path(self.settings.state_file).write_text(json.dumps({
                "node_id": self.control.node_id, "fingerprint": self.fingerprint,
                "endpoints": [e.model_dump() for e in self.endpoints],
            }))

    async def stop(self) -> None:
        log.info("stopping")
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RegistrationRefused):
                await task
        await self.control.close_cascades()
        for closer in self.closers:
            closer.close()
        if self.runner is not None:
            await self.runner.cleanup()
        self.workdir.cleanup()


async def start_node(settings: NodeSettings, dial: Dialler | None = None) -> RunningNode:
    """Listen, start metrics and the control channel; cascades are opened with ``dial``.

    ``dial`` is the seam a hybrid node uses to open its cascades its own way
    (source ports, transports); by default (a cloud node) it dials UDP 5004, then
    TLS 443 (:func:`media_node.cascade.cloud_dialler`).
    Raises a usage :class:`edge.boundary.Failure` when the node cannot listen.
    """
    if not (settings.udp or settings.tcp or settings.tls):
        raise usage("--no-udp, --no-tcp and --no-tls leave nothing to serve",
                    "drop one of them")
    outbox = EventOutbox()
    plane = load_plane(os.environ)  # warns when it must fall back to Python
    log.info("data plane: %s (%s)", plane.kind, plane.reason)
    engine = Engine(settings.node_id or new_node_id(), capacity=settings.capacity,
                    consent_s=settings.consent_s, leg_timeout_s=settings.leg_timeout_s,
                    stun_rate=settings.stun_rate, stun_burst=settings.stun_burst,
                    stun_ip_rate=settings.stun_ip_rate, stun_ip_burst=settings.stun_ip_burst,
                    emit=outbox.put, plane=plane,
                    certificate=DtlsCertificate.generate(datetime.datetime.now(datetime.UTC)))
    admission = admission_for(settings)
    workdir = tempfile.TemporaryDirectory(prefix="pinhole-node-")
    try:
        registry = CollectorRegistry(auto_describe=True)
        endpoints, fingerprint, closers = await start_listeners(
            settings, engine, Path(workdir.name), admission,
            RelayTiming(registry, plane=engine.plane.timing))
    except OSError as exc:
        workdir.cleanup()
        raise usage(f"cannot listen on {settings.bind}: {(exc.strerror or str(exc)).lower()}",
                    "pick other ports with --udp-port/--tcp-port/--tls-port or another "
                    "--listen address") from None
    for e in endpoints:
        log.info("listening on %s %s:%d", e.rung, settings.bind, e.port)
    control = ControlChannel(settings, engine, endpoints, fingerprint, outbox=outbox,
                             dial=dial or cloud_dialler(settings.simulated_rtt_ms / 1000,
                                                        settings.bind,
                                                        settings.consent_check_s))
    node = RunningNode(settings, engine, control, endpoints, fingerprint, closers, workdir)
    if settings.metrics_listen:
        mhost, _, mport = settings.metrics_listen.rpartition(":")
        registry.register(EngineCollector(engine, admission, lambda: control.connected))
        node.runner = web.AppRunner(make_app(engine, admission, lambda: control.connected,
                                             registry), access_log=None)
        await node.runner.setup()
        try:
            await web.TCPSite(node.runner, mhost, int(mport)).start()
        except (OSError, ValueError) as exc:
            await node.stop()
            raise usage(f"--metrics-listen {settings.metrics_listen}: cannot listen "
                        f"({getattr(exc, 'strerror', None) or exc})",
                        "give a free HOST:PORT") from None
        log.info("metrics on http://%s/metrics", settings.metrics_listen)
    node._start_tasks()
    return node


async def run(settings: NodeSettings, dial: Dialler | None = None) -> int:
    """Start the node and serve until a signal (0); failures raise for ``__main__``."""
    node = await start_node(settings, dial)
    heap.settle()  # what start-up built is never walked again by the collector
    return await node.serve_until_signal()
