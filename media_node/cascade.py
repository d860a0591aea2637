"""Outbound cascade legs: this node becomes a client of a peer node for one meeting.

On ``open_cascade`` the node opens a leg to the peer exactly as a client
would (docs/design.md "Media leg") with the same sans-I/O leg client
(``wire.leg_client``): an authenticated Binding Request, retransmitted per
RFC 8489 §6.2.1, on each transport of its ladder in turn until one answers;
over TLS the peer's certificate must be the fingerprint in the node list. The
answer latches the leg on both sides; consent checks about every 4 s, each
interval drawn between 0.8 and 1.2 times it (RFC 7675 §5.1; under 5 s so that
a pinhole closing after 5 s idle holds), keep consent and the NAT pinhole. When consent is
lost the link dials again from the top of its ladder. SRTP on the leg goes
through the engine like any other leg's. Opening each transport, framing,
the pin check and driving the leg client are ``edge.leg_transport``, as for a
participant's client; the link keeps the ladder, the engine's side and the
redial.

A cloud node dials UDP 5004, then TLS 443 (:func:`cloud_dialler`); a hybrid
node passes its own ladder and UDP source ports (``hybrid_node.dial``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from edge.leg_transport import LegLink, LegPath, check_pin, open_stream, open_udp
from media_node.engine import Engine
from media_node.legs import Leg
from wire.address import Address
from wire.leg_client import (
    ConsentExpired,
    ConsentRefreshed,
    Latched,
    LatchFailed,
    LegClient,
    LegConfig,
    LegEvent,
    PinMismatch,
)
from wire.models import NodeInfo, OpenCascade
from wire.transports import TLS_443, UDP_5004, Rung, RungName, Transport

log = logging.getLogger(__name__)

#: A cloud node's cascade ladder, best first: UDP 5004, then TLS 443.
CLOUD_LADDER: Final[tuple[Rung, ...]] = (UDP_5004, TLS_443)


class CascadeLink:
    """One outbound cascade leg and the task that keeps it up."""

    def __init__(self, engine: Engine, command: OpenCascade, *, delay_s: float = 0.0,
                 ladder: Sequence[Rung] = CLOUD_LADDER, source_ports: range | None = None,
                 local_host: str | None = None,
                 udp_timeout_s: float = 2.0, stream_timeout_s: float = 3.0,
                 consent_interval_s: float = 4.0, consent_timeout_s: float = 30.0,
                 retry_s: float = 1.0) -> None:
        self.engine = engine
        self.command = command
        self.delay_s = delay_s
        self.ladder = tuple(ladder)
        self.source_ports = source_ports
        self.local_host = local_host  # the node's own address: its cascades leave from it
        self.udp_timeout_s = udp_timeout_s
        self.stream_timeout_s = stream_timeout_s
        self.consent_interval_s = consent_interval_s
        self.consent_timeout_s = consent_timeout_s
        self.retry_s = retry_s
        self.leg: Leg = engine.add_outbound_cascade(command, time.monotonic())
        self.rung: RungName | None = None
        self.local_port: int | None = None  # the UDP source port of the current path
        self.task: asyncio.Task[None] | None = None
        self.up = asyncio.Event()  # set once the peer has answered on some transport
        self._path: LegPath | None = None
        self._link: LegLink | None = None
        self._lost: asyncio.Event = asyncio.Event()

    @property
    def peer(self) -> NodeInfo:
        return self.command.peer

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self._drop_path()
        self.engine.release(self.leg.leg_id)

    def _endpoint(self, rung: Rung) -> Address | None:
        for e in self.peer.endpoints:
            if e.rung == rung.name and e.transport == rung.transport:
                return Address(self.peer.address, e.port)
        return None

    async def _run(self) -> None:
        while True:
            self._lost.clear()
            if await self._connect():
                self.up.set()
                log.info("cascade %s to %s up on %s from source port %s", self.leg.leg_id,
                         self.peer.id, self.rung, self.local_port)
                await self._lost.wait()
                log.warning("cascade %s to %s: consent lost on %s; dialling again",
                            self.leg.leg_id, self.peer.id, self.rung)
            else:
                log.warning("cascade %s to %s: no rung of %s answered", self.leg.leg_id,
                            self.peer.id, "/".join(r.name for r in self.ladder))
            self._drop_path()
            await asyncio.sleep(self.retry_s * random.uniform(0.5, 1.5))

    async def _connect(self) -> bool:
        for rung in self.ladder:
            address = self._endpoint(rung)
            if address is None:
                continue
            leg = self._new_leg(reliable=rung.transport is not Transport.UDP)
            try:
                path = await self._open(address, rung, leg)
            except (OSError, TimeoutError, ssl.SSLError, PinMismatch) as exc:
                log.warning("cascade %s: %s to %s failed: %s", self.leg.leg_id, rung.name,
                            address, exc)
                self._drop_path()
                continue
            if await self._latch(path, leg):
                self.rung = path.rung
                return True
            self._drop_path()
        return False

    async def _open(self, address: Address, rung: Rung, leg: LegClient) -> LegPath:
        tls = rung.transport is Transport.TLS
        path: LegPath
        if rung.transport is Transport.UDP:
            path = await open_udp(address, rung.name, self._received, local_host=self.local_host,
                                  source_ports=self.source_ports, delay_s=self.delay_s,
                                  count=self.engine.drop)
        else:
            path = await open_stream(address, rung.name, self._received, tls=tls,
                                     timeout_s=self.stream_timeout_s,
                                     local_host=self.local_host, delay_s=self.delay_s,
                                     count=self.engine.drop, on_closed=self.engine.sink_closed)
        self._path = path
        self.local_port = path.local_port
        if tls:  # the certificate the node list published, or nothing
            check_pin(path, leg)
        return path

    def _new_leg(self, *, reliable: bool) -> LegClient:
        ice = self.command.ice
        return LegClient(
            ice.node_ufrag, ice.client_ufrag, self.leg.pwd,
            config=LegConfig(reliable=reliable, rto_s=1.0 if reliable else 0.2, rto_max_s=1.0,
                             latch_timeout_s=self.stream_timeout_s if reliable
                             else self.udp_timeout_s,
                             consent_interval_s=self.consent_interval_s,
                             consent_timeout_s=self.consent_timeout_s),
            expected_fingerprint=self.peer.fingerprint, peer_name=f"media node {self.peer.id}",
            peer_domains=[self.peer.address])

    async def _latch(self, path: LegPath, leg: LegClient) -> bool:
        self._link = LegLink(leg, path, self._on_event)
        return isinstance(await self._link.latch(), Latched)

    def _on_event(self, event: LegEvent) -> None:
        path = self._path
        if isinstance(event, Latched | ConsentRefreshed) and path is not None:
            self.engine.latch_outbound(self.leg, path, path.peer, time.monotonic())
        if isinstance(event, LatchFailed):
            log.warning("cascade %s: %s", self.leg.leg_id, event.reason)
        elif isinstance(event, ConsentExpired):
            self._lost.set()

    def _received(self, data: bytes, path: LegPath) -> None:
        """A packet from the peer: STUN to the leg client, the rest to the engine."""
        if not self.on_stun(path, data):
            self.engine.on_packet(data, path, path.peer, time.monotonic())

    def on_stun(self, path: LegPath, data: bytes) -> bool:
        """A packet from the peer: True when it was STUN (answered or dropped by the leg)."""
        link = self._link
        if link is None or path is not self._path:
            if data and data[0] < 4:  # RFC 7983 §7: STUN on a path no longer in use
                self.engine.drop("stun_unexpected")
                return True
            return False
        if data and data[0] > 3:  # RFC 7983 §7: not STUN, the relay's
            return False
        leg = link.leg
        before = sum(leg.drops.values())
        consumed = link.receive(data)
        if sum(leg.drops.values()) > before:  # forged, late or unexpected: counted, ignored
            self.engine.drop("cascade_stun_dropped")
        return consumed

    def _drop_path(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None
        if self._path is not None:
            self._path.close()
            self._path = None


class Cascade(Protocol):
    """What the control channel holds for each open cascade."""

    def start(self) -> None: ...

    async def close(self) -> None: ...


#: Opens the cascade ``open_cascade`` asks for, the caller's way (transports, source ports).
Dialler = Callable[[Engine, OpenCascade], Cascade]


def cloud_dialler(delay_s: float = 0.0, local_host: str | None = None,
                  consent_interval_s: float = 4.0) -> Dialler:
    """A cloud node's cascades: UDP 5004, then TLS 443 with the peer's fingerprint checked."""

    def dial(engine: Engine, command: OpenCascade) -> Cascade:
        return CascadeLink(engine, command, delay_s=delay_s, local_host=local_host,
                           consent_interval_s=consent_interval_s)

    return dial
