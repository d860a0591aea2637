"""The node's control channel: register over HTTPS, then hold a WebSocket open to the cloud.

The node always connects out (docs/design.md: "every connection is initiated from
inside"). It sends a heartbeat with its load and leg counters every
``heartbeat_s``, answers ``allocate_leg`` / ``release_leg``, and reports leg
events. The WebSocket (the ``websockets`` client) pings the cloud every
``2 × heartbeat_s`` and gives up on a pong that is ``heartbeat_s`` late, so a
hung cloud (or replica) is left in under 2 s with the default 0.5 s. When the
channel drops it registers again and reconnects with jittered exponential
backoff; its legs keep relaying through the gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import re
import secrets
import time
from collections.abc import Callable
from typing import Final

import aiohttp
from pydantic import TypeAdapter, ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from edge.http_proxy import LocalTunnelProxy
from media_node.cascade import Cascade, Dialler
from media_node.engine import Engine
from media_node.settings import NodeSettings
from wire.errors import SrtpError
from wire.models import (
    AllocateLeg,
    CloseCascade,
    CloudToNode,
    ControlRefused,
    Endpoint,
    Heartbeat,
    LegEvent,
    NodeRegistered,
    NodeRegistration,
    OpenCascade,
    ReleaseLeg,
    SetFloor,
    validation_detail,
)
from wire.tls import client_context

log = logging.getLogger(__name__)
_from_cloud: TypeAdapter[
    AllocateLeg | ReleaseLeg | OpenCascade | CloseCascade | SetFloor] = TypeAdapter(CloudToNode)


def why(exc: BaseException) -> str:
    """A connection failure in words: the address and the reason, never an object's repr."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert = exc.certificate_error
        detail = getattr(cert, "verify_message", None) or cert
        return (f"the cloud's certificate at {exc.host}:{exc.port} did not verify ({detail}); "
                "check --ca")
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        reason = os.strerror(os_error.errno) if os_error.errno else str(os_error)
        return f"cannot reach {exc.host}:{exc.port} ({reason.lower()})"
    return str(exc) or type(exc).__name__


def new_node_id() -> str:
    """The id a node takes when none is configured, in the shape the cloud gives ids: known
    before the listeners start, so the engine is built with it and nothing renames it."""
    return "node-" + secrets.token_hex(5)


class RegistrationRefused(Exception):
    """The cloud refused this node (wrong secret, id conflict): retrying will not help."""


OUTBOX_LIMIT: Final = 10_000


class EventOutbox:
    """Leg events waiting for the control channel; bounded, the overflow dropped and counted.

    The engine is built with :meth:`put` as its ``emit`` and the channel
    drains the same outbox, so neither is rewired after construction.
    """

    def __init__(self, limit: int = OUTBOX_LIMIT) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=limit)
        self.dropped = 0

    def put(self, event: LegEvent) -> None:
        try:
            self.queue.put_nowait(event.model_dump_json())
        except asyncio.QueueFull:
            self.dropped += 1


class ControlChannel:
    def __init__(self, settings: NodeSettings, engine: Engine, endpoints: list[Endpoint],
                 fingerprint: str | None, *, dial: Dialler, outbox: EventOutbox,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.engine = engine
        self.endpoints = endpoints
        self.fingerprint = fingerprint
        self.dial = dial
        self.outbox = outbox
        self.clock = clock
        self.connected = False
        self.connects = 0
        self.malformed = 0
        self.cascades: dict[str, Cascade] = {}
        #: the loopback shim to the enterprise proxy (``settings.proxy``), once started
        self.shim: LocalTunnelProxy | None = None

    @property
    def node_id(self) -> str:
        """The engine's: the id this node registers under."""
        return self.engine.node_id

    def send_event(self, event: LegEvent) -> None:
        self.outbox.put(event)

    async def close_cascades(self) -> None:
        """Close every cascade this node opened (the node is stopping)."""
        while self.cascades:
            _, link = self.cascades.popitem()
            await link.close()

    @property
    def proxy_url(self) -> str | None:
        """The loopback shim's URL while the signalling goes through a proxy (aiohttp and
        ``websockets`` speak Basic at most; the shim speaks what the proxy asks)."""
        return self.shim.url if self.shim is not None else None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.node_secret}"}

    async def register(self, http: aiohttp.ClientSession) -> NodeRegistered:
        s = self.settings
        body = NodeRegistration(
            id=self.node_id, kind="hybrid" if s.kind == "hybrid" else "cloud",
            region=s.region, org=s.org or None, address=s.advertise, endpoints=self.endpoints,
            capacity=s.capacity, fingerprint=self.fingerprint, legacy_dc=s.legacy_dc,
            plane=self.engine.plane.kind.value,
            cluster=(s.cluster or None) if s.kind == "hybrid" else None,
            overflow_rtt_ms=s.overflow_rtt_ms,
            dtls_fingerprint=(None if self.engine.certificate is None
                              else str(self.engine.certificate.fingerprint)),
        )
        async with http.post(f"{s.cloud}/v1/nodes", data=body.model_dump_json(),
                             headers={**self._headers(), "Content-Type": "application/json"},
                             proxy=self.proxy_url) as response:
            text = await response.text()
            if response.status in (400, 401, 403, 409):
                raise RegistrationRefused(f"the cloud refused registration ({response.status}): "
                                          f"{text}; check the node secret (--node-secret-file or "
                                          "PINHOLE_NODE_SECRET), --node-id and --org")
            if response.status != 201:
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message=text)
        registered = NodeRegistered.model_validate_json(text)
        if registered.node_id != self.node_id:
            raise RegistrationRefused(f"the cloud registered this node as {registered.node_id}, "
                                      f"not {self.node_id}; check that --cloud names a Pinhole "
                                      "cloud")
        return registered

    async def run_forever(self, registered_once: asyncio.Event | None = None) -> None:
        """Register and serve the channel, reconnecting until cancelled."""
        backoff = 0.5
        ssl_context = client_context(self.settings.ca or None)
        connector = aiohttp.TCPConnector(ssl=ssl_context)
        if self.settings.proxy is not None:  # the signalling through the enterprise's proxy
            self.shim = await LocalTunnelProxy(self.settings.proxy).start()
        try:
            async with aiohttp.ClientSession(connector=connector) as http:
                while True:
                    try:
                        registered = await self.register(http)
                        if registered_once is not None:
                            registered_once.set()
                        await self._serve(http, registered)
                        backoff = 0.5
                    except RegistrationRefused:
                        raise
                    except (aiohttp.ClientError, WebSocketException, OSError, TimeoutError,
                            ValidationError) as exc:
                        log.warning("control channel to %s: %s; retrying in %.1f s",
                                    self.settings.cloud, why(exc), backoff)
                    self.connected = False
                    await asyncio.sleep(backoff * random.uniform(0.5, 1.5))  # jitter: no herds
                    backoff = min(backoff * 2, 10.0)
        finally:
            if self.shim is not None:
                await self.shim.close()

    async def _serve(self, http: aiohttp.ClientSession, registered: NodeRegistered) -> None:
        url = self.settings.cloud.replace("https://", "wss://", 1).replace(
            "http://", "ws://", 1) + registered.control_path
        beat = registered.heartbeat_s
        ssl_context = client_context(self.settings.ca or None) if url.startswith("wss") else None
        async with connect(url, ssl=ssl_context, additional_headers=self._headers(),
                           proxy=self.proxy_url, compression=None, open_timeout=5.0,
                           ping_interval=beat * 2, ping_timeout=beat,
                           close_timeout=beat) as ws:
            self.connected = True
            self.connects += 1
            log.info("control channel up as %s", self.node_id)
            tasks = [
                asyncio.create_task(self._heartbeats(ws, beat)),
                asyncio.create_task(self._drain(ws)),
            ]
            try:
                async for message in ws:
                    if isinstance(message, str):
                        await self._handle(ws, message)
            finally:
                for task in tasks:
                    task.cancel()
                self.connected = False
                log.warning("control channel down")

    async def _handle(self, ws: ClientConnection, text: str) -> None:
        """One command from the cloud; a bad one is answered ``control_refused`` and counted,
        and the node keeps running with every leg it has."""
        try:
            command = _from_cloud.validate_json(text)
        except ValidationError as exc:
            await ws.send(self._refuse(text, validation_detail(exc)).model_dump_json())
            return
        try:
            await self._dispatch(ws, command)
        except (SrtpError, ValueError) as exc:  # the model let through what the engine refuses
            await ws.send(self._refuse(text, str(exc)).model_dump_json())

    def _refuse(self, text: str, detail: str) -> ControlRefused:
        self.malformed += 1
        self.engine.drop("control_refused")
        kind, request_id = "unknown", None
        with contextlib.suppress(ValueError, AttributeError):
            raw = json.loads(text)
            kind = str(raw.get("type", "unknown"))[:32]
            rid = raw.get("request_id")
            if isinstance(rid, str) and re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", rid):
                request_id = rid
        log.warning("control message %s refused (%d so far): %s", kind, self.malformed, detail)
        return ControlRefused(command=kind, request_id=request_id, detail=detail)

    async def _dispatch(
            self, ws: ClientConnection,
            command: AllocateLeg | ReleaseLeg | OpenCascade | CloseCascade | SetFloor) -> None:
        if isinstance(command, AllocateLeg):
            answer = self.engine.allocate(command, self.clock())
            await ws.send(answer.model_dump_json())
        elif isinstance(command, ReleaseLeg):
            leg = self.engine.release(command.leg_id)
            if leg is not None:
                self.send_event(LegEvent(leg_id=leg.leg_id, event="freed",
                                         counters=leg.counters()))
        elif isinstance(command, SetFloor):
            if not self.engine.set_floor(command.meeting_id, command.presenter):
                log.debug("floor of %s ignored: no leg of it here", command.meeting_id)
        elif isinstance(command, OpenCascade):
            old = self.cascades.pop(command.leg_id, None)
            if old is not None:
                await old.close()
            link = self.dial(self.engine, command)
            self.cascades[command.leg_id] = link
            link.start()
        else:
            closing = self.cascades.pop(command.leg_id, None)
            if closing is not None:
                await closing.close()

    async def _heartbeats(self, ws: ClientConnection, every_s: float) -> None:
        with contextlib.suppress(WebSocketException):  # the channel's end is seen by _serve
            while True:
                beat = Heartbeat(load=self.engine.load(), legs=len(self.engine.legs),
                                 stats=self.engine.stats())
                await ws.send(beat.model_dump_json())
                await asyncio.sleep(every_s)

    async def _drain(self, ws: ClientConnection) -> None:
        with contextlib.suppress(WebSocketException):
            while True:
                text = await self.outbox.queue.get()
                await ws.send(text)
