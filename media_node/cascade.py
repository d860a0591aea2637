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
through the engine like any other leg's.

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
from typing import Any, Protocol, cast

from media_node.engine import Engine, Leg
from wire.address import Address
from wire.errors import FramingError
from wire.framing import FrameDecoder, encode_frame
from wire.leg_client import (
    ConsentExpired,
    ConsentRefreshed,
    Latched,
    LatchFailed,
    LegClient,
    LegConfig,
    LegDriver,
    LegEvent,
    PinMismatch,
)
from wire.models import NodeInfo, OpenCascade
from wire.tls import unverified_client_context

log = logging.getLogger(__name__)

#: The rungs a cascade may take, as (transport, endpoint rung) of the peer's node list.
CASCADE_RUNGS: dict[str, str] = {"udp": "udp/5004", "tcp": "tcp/5004", "tls": "tls/443"}


class _Path:
    """What every transport shares: send with the simulated delay, route what comes in."""

    rung: str

    def __init__(self, link: CascadeLink) -> None:
        self.link = link
        self.peer: tuple[str, int] = ("", 0)
        self._loop = asyncio.get_running_loop()

    def send(self, data: bytes, addr: Any = None) -> None:
        delay = self.link.delay_s
        if delay:
            self._loop.call_later(delay, self._send_now, data)
        else:
            self._send_now(data)

    def _send_now(self, data: bytes) -> None:
        raise NotImplementedError

    def received(self, data: bytes, addr: Any) -> None:
        if not self.link.on_stun(self, data):
            self.link.engine.on_packet(data, self, addr, time.monotonic())


class _UdpPath(_Path, asyncio.DatagramProtocol):
    rung = "udp/5004"

    def __init__(self, link: CascadeLink) -> None:
        super().__init__(link)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        peer = self.transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1])) if peer else ("", 0)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.link.engine.drop("udp_error")

    def _send_now(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data)


class _StreamPath(_Path, asyncio.Protocol):
    def __init__(self, link: CascadeLink, rung: str) -> None:
        super().__init__(link)
        self.rung = rung
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1])) if peer else ("", 0)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except FramingError:
            self.link.engine.drop("framing")
            if self.transport is not None:
                self.transport.close()
            return
        for frame in frames:
            self.received(frame, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.engine.sink_closed(self)
        self.transport = None

    def _send_now(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(data))


class CascadeLink:
    """One outbound cascade leg and the task that keeps it up."""

    def __init__(self, engine: Engine, command: OpenCascade, *, delay_s: float = 0.0,
                 ladder: Sequence[str] = ("udp", "tls"), source_ports: range | None = None,
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
        self.rung: str | None = None
        self.local_port: int | None = None  # the UDP source port of the current path
        self.task: asyncio.Task[None] | None = None
        self.up = asyncio.Event()  # set once the peer has answered on some transport
        self._closers: list[asyncio.BaseTransport] = []
        self._path: _Path | None = None
        self._driver: LegDriver | None = None
        self._outcome: asyncio.Future[bool] | None = None
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

    def _endpoint(self, transport: str) -> Address | None:
        for e in self.peer.endpoints:
            if e.transport == transport and e.rung == CASCADE_RUNGS[transport]:
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
                            self.peer.id, "/".join(self.ladder))
            self._drop_path()
            await asyncio.sleep(self.retry_s * random.uniform(0.5, 1.5))

    async def _connect(self) -> bool:
        for transport in self.ladder:
            address = self._endpoint(transport)
            if address is None:
                continue
            leg = self._new_leg(reliable=transport != "udp")
            try:
                path = await (self._open_udp(address) if transport == "udp"
                              else self._open_stream(address, transport, leg))
            except (OSError, TimeoutError, ssl.SSLError, PinMismatch) as exc:
                log.warning("cascade %s: %s to %s failed: %s", self.leg.leg_id, transport,
                            address, exc)
                self._drop_path()
                continue
            if await self._latch(path, leg):
                self.rung = path.rung
                return True
            self._drop_path()
        return False

    async def _open_udp(self, address: Address) -> _Path:
        loop = asyncio.get_running_loop()
        last: OSError | None = None
        ports: Sequence[int] = (0,) if self.source_ports is None else _shuffled(self.source_ports)
        for port in ports:
            local = None if port == 0 and self.local_host is None else (
                self.local_host or "0.0.0.0", port)
            try:
                transport, path = await loop.create_datagram_endpoint(
                    lambda: _UdpPath(self), remote_addr=address, local_addr=local)
            except OSError as exc:  # that source port is taken: the next one
                last = exc
                continue
            self._closers.append(transport)
            self.local_port = int(transport.get_extra_info("sockname")[1])
            return path
        raise OSError(f"no free UDP source port in {_span(self.source_ports)}: {last}")

    async def _open_stream(self, address: Address, transport: str, leg: LegClient) -> _Path:
        loop = asyncio.get_running_loop()
        tls = transport == "tls"
        sock, stream = await asyncio.wait_for(loop.create_connection(
            lambda: _StreamPath(self, CASCADE_RUNGS[transport]), address.host, address.port,
            ssl=unverified_client_context() if tls else None,
            local_addr=None if self.local_host is None else (self.local_host, 0)),
            self.stream_timeout_s)
        self._closers.append(sock)
        self.local_port = None
        if tls:  # the certificate the node list published, or nothing (PinMismatch)
            leg.check_certificate(sock.get_extra_info("ssl_object").getpeercert(True))
        return stream

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

    async def _latch(self, path: _Path, leg: LegClient) -> bool:
        loop = asyncio.get_running_loop()
        self._path = path
        self._outcome = loop.create_future()
        self._driver = LegDriver(leg, path.send, self._on_event,
                                 clock=time.monotonic, call_later=loop.call_later)
        self._driver.start()
        return await self._outcome

    def _on_event(self, event: LegEvent) -> None:
        path = self._path
        if isinstance(event, Latched | ConsentRefreshed) and path is not None:
            self.engine.latch_outbound(self.leg, path, path.peer, time.monotonic())
        if isinstance(event, Latched | LatchFailed):
            if isinstance(event, LatchFailed):
                log.warning("cascade %s: %s", self.leg.leg_id, event.reason)
            if self._outcome is not None and not self._outcome.done():
                self._outcome.set_result(isinstance(event, Latched))
        elif isinstance(event, ConsentExpired):
            self._lost.set()

    def on_stun(self, path: _Path, data: bytes) -> bool:
        """A packet from the peer: True when it was STUN (answered or dropped by the leg)."""
        if self._driver is None or path is not self._path:
            if data and data[0] < 4:  # RFC 7983 §7: STUN on a path no longer in use
                self.engine.drop("stun_unexpected")
                return True
            return False
        leg = self._driver.leg
        before = sum(leg.drops.values())
        consumed = self._driver.receive(data)
        if sum(leg.drops.values()) > before:  # forged, late or unexpected: counted, ignored
            self.engine.drop("cascade_stun_dropped")
        return consumed

    def _drop_path(self) -> None:
        if self._driver is not None:
            self._driver.close()
            self._driver = None
        self._path = None
        for transport in self._closers:
            transport.close()
        self._closers.clear()


def _shuffled(ports: range) -> list[int]:
    """Source ports in a random order, so restarts and parallel cascades spread over the range."""
    out = list(ports)
    random.shuffle(out)
    return out


def _span(ports: range | None) -> str:
    return "any" if ports is None or not ports else f"{ports.start}-{ports.stop - 1}"


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
