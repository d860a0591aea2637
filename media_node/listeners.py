"""The node's sockets: UDP datagrams, and TCP/TLS streams with RFC 4571 framing.

Each listener is a :class:`~media_node.engine.Sink` for the engine. With a
simulated RTT every send is delayed by that many milliseconds (a simulation
knob standing in for distance; docs/design.md "Entry points").
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from edge.admission import Admission, ConnectionLimits
from media_node.engine import Engine
from media_node.metrics import RelayTiming
from media_node.plane import MAX_DATAGRAM as MAX_DATAGRAM
from wire.errors import FramingError
from wire.multiplex import FrameDecoder, encode_frame
from wire.tls_stream import ServerTls
from wire.transports import RungName

log = logging.getLogger(__name__)

# What a port may hold to send while its socket's send buffer stays full (an egress slower
# than the media, a shaper): about 380 packets of 172 B, half a second of one 1 Mbit/s
# video stream. Beyond it a packet is dropped and counted: media late is media lost.
SEND_QUEUE_LIMIT = 64 * 1024
# Datagrams read per wake-up at most, so one busy port does not starve the loop's others.
READ_BUDGET = 64
# What a port with a simulated distance holds on its way (sent, not yet due): 0.5 s of
# 4 Mbit/s. Beyond it a packet is dropped and counted (``udp_send_full``), so a flood into
# a delayed port cannot grow the node's memory without bound.
DELAY_LINE_LIMIT = 256 * 1024


class UdpListener:
    """One UDP port. The engine's data plane reads it (:mod:`media_node.plane`), in
    reads of at most ``MAX_DATAGRAM`` bytes.

    The plane relays routed SRTP itself and hands every other datagram back, in
    arrival order, for :meth:`Engine.on_packet` with its source address (a routed
    packet that came after them waits in the plane until they are handled). Python
    sends (STUN answers, SRTCP, media the plane does not route) leave by
    ``sendto`` on the port's socket. When the socket's send buffer is full a
    packet waits in the port's queue, the plane's refused sends with it (and the
    plane sends nothing on this port until the queue is empty, so the order
    holds), up to ``SEND_QUEUE_LIMIT`` bytes; past that it is dropped and
    counted (``udp_send_full``), so a send buffer that stays full cannot grow
    the node's memory without bound.

    A port with a simulated distance (``delay_s``) still lets the plane relay for the
    legs latched on it: the plane holds the port backlogged, so each packet it protects
    for this port comes back, and the port sends it ``delay_s`` later, as it sends its
    own (STUN answers, media the engine relays): in order, through one delay line
    bounded by ``DELAY_LINE_LIMIT`` bytes.
    """

    def __init__(self, engine: Engine, rung: RungName, delay_s: float, sock: socket.socket,
                 timing: RelayTiming | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.clock = clock  # the engine's ``now`` (a test's fake clock drives consent)
        self.rung = rung
        self.delay_s = delay_s
        self.timing = timing
        self._loop = asyncio.get_running_loop()
        self._socket = sock
        sock.setblocking(False)
        self._fd = sock.fileno()
        self.port = int(sock.getsockname()[1])
        self._plane = engine.plane
        self._drain = engine.plane.drain
        self._on_packet = engine.on_packet
        self._untimed = timing.every if timing is not None else -1  # packets until one is timed
        self._queue: deque[tuple[bytes, Any]] = deque()
        self.queued = 0  # bytes in the queue
        self.delayed = 0  # bytes on the simulated distance, not yet due
        self._closed = False
        #: what the engine calls per packet: the send itself when there is no simulated
        #: distance (no call in between)
        self.send: Callable[[bytes, Any], None] = (
            self._send_later if delay_s else self._send_now)
        # the plane relays for legs latched here; across a simulated distance it hands
        # every send back (backlogged for good) and the port sends it when it is due
        self._plane.attach(sock, self.send if delay_s else self._enqueue, self)
        if delay_s:
            self._plane.backlog(self._fd, True)
        self._loop.add_reader(self._fd, self._readable)

    @property
    def fast_fd(self) -> int | None:
        """The descriptor the data plane relays for this port (across a simulated
        distance it hands the sends back to :meth:`send`); None once closed."""
        return self._plane.fast_fd(self)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._plane.detach(self._fd)
        self.engine.sink_closed(self)  # no route may name this descriptor once it is closed
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._queue.clear()
        self.queued = 0
        self._socket.close()

    def _readable(self) -> None:
        if self._closed:  # a read scheduled for a held packet, after the port closed
            return
        try:
            got = self._drain(self._fd, READ_BUDGET)
        except MemoryError:
            self.engine.drop("udp_error")
            return
        if got is None:
            return
        packets, sends, held = got
        if sends is not None:
            self._plane.hand_back(sends)
        if held:  # a routed packet came after these: the next read relays it, after them
            self._loop.call_soon(self._readable)
        if packets is None:
            return
        on_packet = self._on_packet
        now = self.clock()
        for data, addr in packets:
            self._untimed -= 1
            if self._untimed:  # the common case: one call, nothing else
                on_packet(data, self, addr, now)
                continue
            timing = self.timing
            assert timing is not None  # without timing the count starts below zero: never 0
            self._untimed = timing.every
            started = time.perf_counter()
            on_packet(data, self, addr, now)
            timing.observe(started)

    def _send_later(self, data: bytes, addr: Any) -> None:
        if self._closed:
            return
        if self.delayed + len(data) > DELAY_LINE_LIMIT:
            self.engine.drop("udp_send_full")
            return
        self.delayed += len(data)
        self._loop.call_later(self.delay_s, self._due, data, addr)

    def _due(self, data: bytes, addr: Any) -> None:
        self.delayed -= len(data)
        self._send_now(data, addr)

    def _send_now(self, data: bytes, addr: Any) -> None:
        if self._queue:
            self._enqueue(data, addr)
            return
        if self._closed:
            return
        try:
            self._socket.sendto(data, addr)
        except BlockingIOError:  # the send buffer is full: the port queues a little
            self._enqueue(data, addr)
        except OSError:
            self.engine.drop("udp_error")  # e.g. ICMP unreachable reported on this send

    def _enqueue(self, data: bytes, addr: Any) -> None:
        if self._closed:
            return
        if self.queued + len(data) > SEND_QUEUE_LIMIT:
            self.engine.drop("udp_send_full")
            return
        if not self._queue:
            self._plane.backlog(self._fd, True)
            self._loop.add_writer(self._fd, self._flush)
        self._queue.append((data, addr))
        self.queued += len(data)

    def _flush(self) -> None:
        queue = self._queue
        while queue:
            data, addr = queue[0]
            try:
                self._socket.sendto(data, addr)
            except BlockingIOError:
                return
            except OSError:
                self.engine.drop("udp_error")
            queue.popleft()
            self.queued -= len(data)
        self._loop.remove_writer(self._fd)
        if not self.delay_s:  # across a simulated distance the plane's sends always come back
            self._plane.backlog(self._fd, False)


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection: framed packets in, framed packets out.

    Bounded (before: the node kept silent, 1-byte and half-frame connections
    forever): the listener's :class:`~edge.admission.Admission` must admit the
    source before anything else (TLS included: the node runs TLS itself on
    memory BIOs, :class:`~wire.tls_stream.ServerTls`, so no handshake byte is
    processed before admission, and the handshake has a counted deadline), the
    first whole RFC 4571 frame must
    arrive within ``first_message_s``, and a connection without a whole frame
    for ``idle_s`` is closed. Bytes that never complete a frame do not count as
    activity. Each closing reason is counted in ``admission.refusals``.
    """

    def __init__(self, engine: Engine, rung: RungName, delay_s: float, frame_limit: int,
                 admission: Admission, limits: ConnectionLimits,
                 tls: ssl.SSLContext | None = None, timing: RelayTiming | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.clock = clock  # the engine's ``now`` (a test's fake clock drives consent)
        self.rung = rung
        self.delay_s = delay_s
        self.timing = timing
        self.decoder = FrameDecoder(frame_limit)
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self._loop = asyncio.get_running_loop()
        self._admission = admission
        self._limits = limits
        self._admitted = False
        self._frames = 0
        self._last_frame = 0.0
        self._opened = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._tls = ServerTls(tls) if tls is not None else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1])) if peer else ("", 0)
        if not self._admission.admit(self.peer[0]):
            self.transport.abort()
            self.transport = None
            return
        self._admitted = True
        self._opened = self._loop.time()
        self._arm(self._opened + self._first_deadline())

    def _first_deadline(self) -> float:
        """Seconds from accept to the first whole frame (TLS: after its handshake)."""
        first = self._limits.first_message_s
        if not first:
            return float("inf")
        return first + (self._limits.handshake_s if self._tls is not None else 0.0)

    def _close(self, reason: str) -> None:
        """Close for ``reason`` (counted once) and give the admission slot back now."""
        if not self._admitted:
            return
        self._admission.refuse(reason)
        transport = self.transport
        self.connection_lost(None)
        if transport is not None:
            transport.abort()

    def _arm(self, when: float) -> None:
        if when != float("inf"):
            self._timer = self._loop.call_at(when, self._check)

    def _check(self) -> None:
        """The one timer: first-message deadline, then idle timeout (no clock per packet)."""
        self._timer = None
        if self.transport is None:
            return
        now = self._loop.time()
        if self._tls is not None and not self._tls.established:
            handshake = self._limits.handshake_s or float("inf")
            deadline, reason = self._opened + handshake, "tls_handshake"
        elif self._frames == 0:
            deadline, reason = self._opened + self._first_deadline(), "first_message"
        else:
            idle = self._limits.idle_s or float("inf")
            deadline, reason = self._last_frame + idle, "idle"
        if now >= deadline:
            log.debug("closing %s connection from %s: %s deadline", self.rung, self.peer, reason)
            self._close(reason)
            return
        self._arm(deadline)

    def data_received(self, data: bytes) -> None:
        if self._tls is not None:
            if not self._admitted:
                return
            was_established = self._tls.established
            try:
                data = self._tls.receive(data)
            except ssl.SSLError as exc:
                log.debug("TLS from %s failed: %s", self.peer, exc)
                self._close("tls_handshake" if not was_established else "tls_error")
                return
            self._flush_tls()
            if self._tls.peer_closed and self.transport is not None:
                self.transport.close()
            if not data:
                return
        try:
            frames = self.decoder.feed(data)
        except FramingError as exc:
            self.engine.drop("framing")
            log.info("closing %s connection from %s: %s", self.rung, self.peer, exc)
            if self.transport is not None:
                self.transport.close()
            return
        if not frames:
            return  # bytes of a frame not yet whole are not activity
        now = self.clock()
        self._frames += len(frames)
        self._last_frame = self._loop.time()
        timing = self.timing
        for frame in frames:
            if timing is not None and timing.due():
                started = time.perf_counter()
                self.engine.on_packet(frame, self, self.peer, now)
                timing.observe(started)
            else:
                self.engine.on_packet(frame, self, self.peer, now)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._admitted:
            self._admitted = False
            self._admission.release(self.peer[0])
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
        if self._tls is None:
            transport.write(encode_frame(data))
        elif self._tls.established:
            self._tls.send(encode_frame(data))
            self._flush_tls()

    def _flush_tls(self) -> None:
        assert self._tls is not None
        out = self._tls.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)


async def bind_udp(engine: Engine, host: str, port: int, rung: RungName, delay_s: float,
                   timing: RelayTiming | None = None,
                   clock: Callable[[], float] = time.monotonic) -> UdpListener:
    """Bind a UDP port (``port`` 0: any) on ``host`` for the engine; raises OSError."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind(address)
        return UdpListener(engine, rung, delay_s, sock, timing, clock)
    except BaseException:
        sock.close()
        raise


async def bind_stream(engine: Engine, host: str, port: int, rung: RungName, delay_s: float,
                      context: ssl.SSLContext | None, admission: Admission,
                      limits: ConnectionLimits, frame_limit: int = 4096,
                      timing: RelayTiming | None = None,
                      clock: Callable[[], float] = time.monotonic
                      ) -> tuple[asyncio.Server, int]:
    """Listen for TCP (``context`` None) or TLS; TLS starts on a connection once admitted."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: StreamConnection(engine, rung, delay_s, frame_limit, admission, limits, context,
                                 timing, clock),
        host, port, reuse_address=True)
    return server, int(server.sockets[0].getsockname()[1])
