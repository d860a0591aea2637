"""The node's control channel: register over HTTPS, then hold a WebSocket open to the cloud.

The node always connects out (docs/design.md: "every connection is initiated from
inside"). It sends a heartbeat with its load and leg counters every
``heartbeat_s``, answers ``allocate_leg`` / ``release_leg``, and reports leg
events. When the channel drops it registers again and reconnects with
jittered exponential backoff; its legs keep relaying through the gap.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable
from typing import Final

import aiohttp
from pydantic import TypeAdapter, ValidationError

from media_node.cascade import Cascade, Dialler
from media_node.engine import Engine
from media_node.settings import NodeSettings
from wire.models import (
    AllocateLeg,
    CloseCascade,
    CloudToNode,
    Endpoint,
    Heartbeat,
    LegEvent,
    NodeRegistered,
    NodeRegistration,
    OpenCascade,
    ReleaseLeg,
)
from wire.tls import client_context

log = logging.getLogger(__name__)
_from_cloud: TypeAdapter[AllocateLeg | ReleaseLeg | OpenCascade | CloseCascade] = TypeAdapter(
    CloudToNode)


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
        self.node_id = settings.node_id
        self.connected = False
        self.connects = 0
        self.malformed = 0
        self.cascades: dict[str, Cascade] = {}

    def send_event(self, event: LegEvent) -> None:
        self.outbox.put(event)

    async def close_cascades(self) -> None:
        """Close every cascade this node opened (the node is stopping)."""
        while self.cascades:
            _, link = self.cascades.popitem()
            await link.close()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.node_secret}"}

    async def register(self, http: aiohttp.ClientSession) -> NodeRegistered:
        s = self.settings
        body = NodeRegistration(
            id=self.node_id or None, kind="hybrid" if s.kind == "hybrid" else "cloud",
            region=s.region, org=s.org or None, address=s.advertise, endpoints=self.endpoints,
            capacity=s.capacity, fingerprint=self.fingerprint, legacy_dc=s.legacy_dc,
        )
        async with http.post(f"{s.cloud}/v1/nodes", data=body.model_dump_json(),
                             headers={**self._headers(), "Content-Type": "application/json"}
                             ) as response:
            text = await response.text()
            if response.status in (400, 401, 403, 409):
                raise RegistrationRefused(f"the cloud refused registration ({response.status}): "
                                          f"{text}; check --node-secret, --node-id and --org")
            if response.status != 201:
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message=text)
        registered = NodeRegistered.model_validate_json(text)
        self.node_id = registered.node_id
        self.engine.node_id = registered.node_id
        return registered

    async def run_forever(self, registered_once: asyncio.Event | None = None) -> None:
        """Register and serve the channel, reconnecting until cancelled."""
        backoff = 0.5
        ssl_context = client_context(self.settings.ca or None)
        connector = aiohttp.TCPConnector(ssl=ssl_context)
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
                except (aiohttp.ClientError, OSError, TimeoutError, ValidationError) as exc:
                    log.warning("control channel to %s: %s; retrying in %.1f s",
                                self.settings.cloud, why(exc), backoff)
                self.connected = False
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))  # jitter: no herds
                backoff = min(backoff * 2, 10.0)

    async def _serve(self, http: aiohttp.ClientSession, registered: NodeRegistered) -> None:
        url = self.settings.cloud + registered.control_path
        async with http.ws_connect(url, headers=self._headers(),
                                   heartbeat=registered.heartbeat_s * 2) as ws:
            self.connected = True
            self.connects += 1
            log.info("control channel up as %s", self.node_id)
            tasks = [
                asyncio.create_task(self._heartbeats(ws, registered.heartbeat_s)),
                asyncio.create_task(self._drain(ws)),
            ]
            try:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    await self._handle(ws, msg.data)
            finally:
                for task in tasks:
                    task.cancel()
                self.connected = False
                log.warning("control channel down")

    async def _handle(self, ws: aiohttp.ClientWebSocketResponse, text: str) -> None:
        try:
            command = _from_cloud.validate_json(text)
        except ValidationError:
            self.malformed += 1
            log.warning("malformed control message dropped (%d so far)", self.malformed)
            return
        if isinstance(command, AllocateLeg):
            answer = self.engine.allocate(command, self.clock())
            await ws.send_str(answer.model_dump_json())
        elif isinstance(command, ReleaseLeg):
            leg = self.engine.release(command.leg_id)
            if leg is not None:
                self.send_event(LegEvent(leg_id=leg.leg_id, event="freed",
                                         counters=leg.counters()))
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

    async def _heartbeats(self, ws: aiohttp.ClientWebSocketResponse, every_s: float) -> None:
        while not ws.closed:
            beat = Heartbeat(load=self.engine.load(), legs=len(self.engine.legs),
                             stats=self.engine.stats())
            await ws.send_str(beat.model_dump_json())
            await asyncio.sleep(every_s)

    async def _drain(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while not ws.closed:
            text = await self.outbox.queue.get()
            await ws.send_str(text)
