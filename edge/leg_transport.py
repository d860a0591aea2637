"""One media leg's transport, client side: open it, frame it, check the pin, drive the leg.

A participant's client (``client.media``) and a node dialling a cascade to
a peer node (``media_node.cascade``) open the same kinds of leg (docs/design.md
"Media leg"): a connected UDP socket, a TCP or TLS connection carrying RFC 4571
frames, or TLS inside an HTTP CONNECT tunnel. Over TLS the peer's certificate
must be the one the node list publishes (:func:`check_pin`, through the leg
client's pin). The leg's STUN is the sans-I/O :class:`wire.leg_client.LegClient`;
:class:`LegLink` runs it with :class:`~wire.leg_client.LegDriver` on the event
loop's ``call_later`` and a monotonic clock, and awaits the latch.

Every packet from the peer (a datagram, or one whole frame) goes to the
caller's ``deliver(data, path)`` straight from the protocol callback: no
queue, no task, no object per packet; the caller classifies it (RFC 7983).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from wire.address import Address
from wire.errors import FramingError
from wire.leg_client import Latched, LatchFailed, LegClient, LegDriver, LegEvent
from wire.multiplex import FrameDecoder, encode_frame
from wire.tls import unverified_client_context
from wire.transports import RungName

#: Every packet from the peer, with the path it came on.
Deliver = Callable[[bytes, "LegPath"], None]
#: Something the caller counts: ``"udp_error"`` (an ICMP error), ``"framing"`` (a bad frame).
Count = Callable[[str], None]


def _ignore(reason: str) -> None:
    return None


class LegPath:
    """One open transport of a leg: ``send`` a packet (framed over a stream), ``close``.

    ``send(data, addr)`` matches a relay's sink (``addr`` is ignored: the path
    is connected). ``delay_s`` holds every packet back that long (a simulated
    link, for labs and tests).
    """

    def __init__(self, rung: RungName, deliver: Deliver, *, delay_s: float = 0.0,
                 count: Count = _ignore) -> None:
        self.rung = rung
        self.peer: tuple[str, int] = ("", 0)
        self.local_port: int | None = None
        self.delay_s = delay_s
        self.closed = False
        self._deliver = deliver
        self._count = count
        self._loop = asyncio.get_running_loop()

    def send(self, data: bytes, addr: Any = None) -> None:
        if self.delay_s:
            self._loop.call_later(self.delay_s, self._send_now, data)
        else:
            self._send_now(data)

    def _send_now(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def peer_certificate(self) -> bytes | None:
        """The peer's DER certificate (TLS paths), else None."""
        return None


def _peer(transport: asyncio.BaseTransport) -> tuple[str, int]:
    peer = transport.get_extra_info("peername")
    return (str(peer[0]), int(peer[1])) if peer else ("", 0)


class UdpPath(LegPath, asyncio.DatagramProtocol):
    """A connected UDP socket: every datagram from the peer is delivered."""

    def __init__(self, rung: RungName, deliver: Deliver, *, delay_s: float = 0.0,
                 count: Count = _ignore) -> None:
        super().__init__(rung, deliver, delay_s=delay_s, count=count)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # selector and uvloop UDP transports do not all subclass DatagramTransport
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.peer = _peer(transport)
        self.local_port = int(transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._deliver(data, self)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable: keep going
        self._count("udp_error")

    def _send_now(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class StreamPath(LegPath, asyncio.Protocol):
    """TCP or TLS carrying RFC 4571 frames; each whole frame is delivered.

    A stream that is not framing is closed (counted ``"framing"``);
    ``on_closed`` hears when the connection ends, whoever ended it.
    """

    def __init__(self, rung: RungName, deliver: Deliver, *, delay_s: float = 0.0,
                 count: Count = _ignore,
                 on_closed: Callable[[StreamPath], None] | None = None) -> None:
        super().__init__(rung, deliver, delay_s=delay_s, count=count)
        self.transport: asyncio.Transport | None = None
        self._decoder = FrameDecoder()
        self._on_closed = on_closed
        # the CONNECT tunnel's StreamWriter, held: collected, it closes the TCP connection
        # under the TLS (StreamWriter.__del__)
        self._tunnel: asyncio.StreamWriter | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.peer = _peer(transport)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except FramingError:
            self._count("framing")
            self.close()
            return
        for frame in frames:
            self._deliver(frame, self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.closed = True
        if self._on_closed is not None:
            self._on_closed(self)

    def _send_now(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(data))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def peer_certificate(self) -> bytes | None:
        ssl_object = None if self.transport is None else \
            self.transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return None
        der = ssl_object.getpeercert(binary_form=True)
        return None if der is None else bytes(der)


async def open_udp(address: Address, rung: RungName, deliver: Deliver, *,
                   local_host: str | None = None, source_ports: Sequence[int] | None = None,
                   delay_s: float = 0.0, count: Count = _ignore) -> UdpPath:
    """A UDP socket connected to ``address``; from one of ``source_ports`` (tried in a
    random order, so restarts and parallel legs spread over the range) when given."""
    loop = asyncio.get_running_loop()
    ports: list[int] = [0] if source_ports is None else list(source_ports)
    random.shuffle(ports)
    last: OSError | None = None
    for port in ports:
        local = None if port == 0 and local_host is None else (local_host or "0.0.0.0", port)
        try:
            _, path = await loop.create_datagram_endpoint(
                lambda: UdpPath(rung, deliver, delay_s=delay_s, count=count),
                remote_addr=address, local_addr=local)
        except OSError as exc:  # that source port is taken: the next one
            last = exc
            continue
        return path
    raise OSError(f"no free UDP source port in {_span(source_ports)}: {last}")


async def open_stream(address: Address, rung: RungName, deliver: Deliver, *, tls: bool,
                      timeout_s: float, local_host: str | None = None, delay_s: float = 0.0,
                      count: Count = _ignore,
                      on_closed: Callable[[StreamPath], None] | None = None) -> StreamPath:
    """TCP, or TLS that checks nothing itself (call :func:`check_pin` next), with framing.

    Raises ``TimeoutError`` after ``timeout_s``, ``OSError`` or ``ssl.SSLError``.
    """
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout_s):
        _, path = await loop.create_connection(
            lambda: StreamPath(rung, deliver, delay_s=delay_s, count=count, on_closed=on_closed),
            address.host, address.port, ssl=unverified_client_context() if tls else None,
            local_addr=None if local_host is None else (local_host, 0))
    return path


async def open_over_tunnel(tunnel: asyncio.StreamWriter, rung: RungName, deliver: Deliver, *,
                           timeout_s: float, count: Count = _ignore,
                           on_closed: Callable[[StreamPath], None] | None = None) -> StreamPath:
    """TLS (checking nothing itself: call :func:`check_pin` next) with framing, inside an
    open HTTP CONNECT tunnel (RFC 9110 §9.3.6); the tunnel's stream is not read again."""
    loop = asyncio.get_running_loop()
    path = StreamPath(rung, deliver, count=count, on_closed=on_closed)
    path._tunnel = tunnel
    try:
        async with asyncio.timeout(timeout_s):
            transport = await loop.start_tls(tunnel.transport, path,
                                             unverified_client_context())
    except BaseException:
        tunnel.close()
        raise
    if transport is None:  # the tunnel closed under the handshake
        raise ConnectionResetError("the proxy closed the tunnel during the TLS handshake")
    path.connection_made(transport)
    return path


def check_pin(path: LegPath, leg: LegClient) -> None:
    """The peer's certificate must be the one the node list publishes (the leg client's
    pin); else the path is closed and :class:`~wire.leg_client.PinMismatch` raised."""
    der = path.peer_certificate()
    try:
        leg.check_certificate(der or b"")
    except BaseException:
        path.close()
        raise


class LegLink:
    """A :class:`~wire.leg_client.LegClient` driven on one path.

    :meth:`latch` starts it and waits for the latch's outcome; every later
    event goes to ``on_event`` (the latch's too). STUN from the peer is handed
    to :meth:`receive` by whoever classifies the path's packets.
    """

    def __init__(self, leg: LegClient, path: LegPath, on_event: Callable[[LegEvent], None],
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        loop = asyncio.get_running_loop()
        self.path = path
        self._on_event = on_event
        self._outcome: asyncio.Future[Latched | LatchFailed] = loop.create_future()
        self.driver = LegDriver(leg, path.send, self._event, clock=clock,
                                call_later=loop.call_later)

    @property
    def leg(self) -> LegClient:
        return self.driver.leg

    async def latch(self) -> Latched | LatchFailed:
        """Send the latch request (RFC 8489 §6.2.1 retransmissions over UDP) and wait."""
        self.driver.start()
        return await self._outcome

    def receive(self, data: bytes) -> bool:
        """A packet from the peer; True when it was STUN (the leg answered or dropped it)."""
        return self.driver.receive(data)

    def close(self) -> None:
        self.driver.close()
        if not self._outcome.done():
            self._outcome.cancel()

    def _event(self, event: LegEvent) -> None:
        self._on_event(event)
        if isinstance(event, Latched | LatchFailed) and not self._outcome.done():
            self._outcome.set_result(event)


def _span(ports: Sequence[int] | None) -> str:
    if not ports:
        return "any"
    if isinstance(ports, range):
        return f"{ports.start}-{ports.stop - 1}"
    return f"{min(ports)}-{max(ports)}"
