"""The node's sockets: UDP datagrams, and TCP/TLS streams with RFC 4571 framing.

Each listener is a :class:`~media_node.engine.Sink` for the engine. With a
simulated RTT every send is delayed by that many milliseconds (a simulation
knob standing in for distance; docs/design.md "Entry points").
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any, cast

from media_node.engine import Engine
from media_node.metrics import RelayTiming
from wire.errors import FramingError
from wire.framing import FrameDecoder, encode_frame

log = logging.getLogger(__name__)

MAX_DATAGRAM = 2048  # docs/design.md: transport.max_size = 2048 instead of recvfrom(262144)


class UdpListener(asyncio.DatagramProtocol):
    """One UDP port; packets go to the engine with their source address."""

    def __init__(self, engine: Engine, rung: str, delay_s: float,
                 timing: RelayTiming | None = None) -> None:
        self.engine = engine
        self.rung = rung
        self.delay_s = delay_s
        self.timing = timing
        self.transport: asyncio.DatagramTransport | None = None
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # selector and uvloop UDP transports do not all subclass DatagramTransport
        self.transport = cast(asyncio.DatagramTransport, transport)
        if hasattr(transport, "max_size"):
            transport.max_size = MAX_DATAGRAM

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        timing = self.timing
        if timing is not None and timing.due():
            started = time.perf_counter()
            self.engine.on_packet(data, self, addr, time.monotonic())
            timing.observe(started)
        else:
            self.engine.on_packet(data, self, addr, time.monotonic())

    def error_received(self, exc: Exception) -> None:
        self.engine.drop("udp_error")  # ICMP unreachable from a client that went away

    def send(self, data: bytes, addr: Any) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.delay_s:
            self._loop.call_later(self.delay_s, self._send_now, data, addr)
        else:
            transport.sendto(data, addr)

    def _send_now(self, data: bytes, addr: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection: framed packets in, framed packets out."""

    def __init__(self, engine: Engine, rung: str, delay_s: float, frame_limit: int,
                 timing: RelayTiming | None = None) -> None:
        self.engine = engine
        self.rung = rung
        self.delay_s = delay_s
        self.timing = timing
        self.decoder = FrameDecoder(frame_limit)
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1])) if peer else ("", 0)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except FramingError as exc:
            self.engine.drop("framing")
            log.info("closing %s connection from %s: %s", self.rung, self.peer, exc)
            if self.transport is not None:
                self.transport.close()
            return
        now = time.monotonic()
        timing = self.timing
        for frame in frames:
            if timing is not None and timing.due():
                started = time.perf_counter()
                self.engine.on_packet(frame, self, self.peer, now)
                timing.observe(started)
            else:
                self.engine.on_packet(frame, self, self.peer, now)

    def connection_lost(self, exc: Exception | None) -> None:
        self.engine.sink_closed(self)
        self.transport = None

    def send(self, data: bytes, addr: Any) -> None:
        if self.delay_s:
            self._loop.call_later(self.delay_s, self._send_now, data)
        else:
            self._send_now(data)

    def _send_now(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > 1 << 20:
            self.engine.drop("stream_backlog")  # a stalled reader: drop, as UDP would
            return
        transport.write(encode_frame(data))


async def bind_udp(engine: Engine, host: str, port: int, rung: str, delay_s: float,
                   timing: RelayTiming | None = None) -> tuple[asyncio.DatagramTransport, int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: UdpListener(engine, rung, delay_s, timing), local_addr=(host, port))
    return transport, int(transport.get_extra_info("sockname")[1])


async def bind_stream(engine: Engine, host: str, port: int, rung: str, delay_s: float,
                      context: ssl.SSLContext | None, frame_limit: int = 4096,
                      timing: RelayTiming | None = None) -> tuple[asyncio.Server, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: StreamConnection(engine, rung, delay_s, frame_limit, timing), host, port,
        ssl=context, reuse_address=True)
    return server, int(server.sockets[0].getsockname()[1])
