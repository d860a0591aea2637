"""Outbound cascade legs: this node becomes a client of a peer node for one meeting.

On ``open_cascade`` the node opens a leg to the peer exactly as a client
would (docs/design.md "Media leg"): an authenticated Binding Request to the peer's
UDP 5004, falling back to TLS 443 (framed, the peer's certificate checked
against the fingerprint in the node list) when UDP gets no answer. The
answer latches the leg on both sides; keepalives every ``keepalive_s`` keep
consent (RFC 7675) and the NAT pinhole open. SRTP on the leg goes through the
engine like any other leg's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from typing import Any, cast

from media_node.engine import Engine, Leg
from wire.address import Address
from wire.demux import STUN_FIRST
from wire.errors import FramingError, StunError
from wire.framing import FrameDecoder, encode_frame
from wire.models import NodeInfo, OpenCascade
from wire.stun import build_leg_binding, parse_binding_response, transaction_id_of
from wire.tls import cert_fingerprint, unverified_client_context

log = logging.getLogger(__name__)


class _Path:
    """What both transports share: send with the simulated delay, route what comes in."""

    rung: str

    def __init__(self, link: CascadeLink) -> None:
        self.link = link
        self._loop = asyncio.get_running_loop()

    def send(self, data: bytes, addr: Any) -> None:
        delay = self.link.delay_s
        if delay:
            self._loop.call_later(delay, self._send_now, data)
        else:
            self._send_now(data)

    def _send_now(self, data: bytes) -> None:
        raise NotImplementedError

    def received(self, data: bytes, addr: Any) -> None:
        if data and data[0] < STUN_FIRST.stop:
            self.link.on_stun(data, self, addr)
        else:
            self.link.engine.on_packet(data, self, addr, time.monotonic())


class _UdpPath(_Path, asyncio.DatagramProtocol):
    rung = "udp/5004"

    def __init__(self, link: CascadeLink) -> None:
        super().__init__(link)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.link.engine.drop("udp_error")

    def _send_now(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data)


class _StreamPath(_Path, asyncio.Protocol):
    rung = "tls/443"

    def __init__(self, link: CascadeLink) -> None:
        super().__init__(link)
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder()
        self.peer: tuple[str, int] = ("", 0)

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
                 keepalive_s: float = 15.0, udp_timeout_s: float = 2.0) -> None:
        self.engine = engine
        self.command = command
        self.delay_s = delay_s
        self.keepalive_s = keepalive_s
        self.udp_timeout_s = udp_timeout_s
        self.leg: Leg = engine.add_outbound_cascade(command, time.monotonic())
        self.rung: str | None = None
        self._pending: dict[bytes, asyncio.Future[tuple[bytes, Any]]] = {}
        self._closers: list[asyncio.BaseTransport] = []
        self.task: asyncio.Task[None] | None = None
        self.up = asyncio.Event()  # set once the peer has answered on some transport

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
        for transport in self._closers:
            transport.close()
        self.engine.release(self.leg.leg_id)

    def _endpoint(self, transport: str) -> Address | None:
        for e in self.peer.endpoints:
            if e.transport == transport and (transport != "udp" or e.rung == "udp/5004"):
                return Address(self.peer.address, e.port)
        return None

    async def _run(self) -> None:
        path = await self._connect()
        if path is None:
            log.warning("cascade %s to %s: neither UDP 5004 nor TLS 443 answered",
                        self.leg.leg_id, self.peer.id)
            return
        self.rung = path.rung
        self.up.set()
        log.info("cascade %s to %s up on %s", self.leg.leg_id, self.peer.id, path.rung)
        while True:
            await asyncio.sleep(self.keepalive_s)
            with contextlib.suppress(TimeoutError, StunError):
                await self._binding(path, 2.0)

    async def _connect(self) -> _Path | None:
        loop = asyncio.get_running_loop()
        udp = self._endpoint("udp")
        if udp is not None:
            transport, path = await loop.create_datagram_endpoint(
                lambda: _UdpPath(self), remote_addr=udp)
            self._closers.append(transport)
            if await self._latch(path, self.udp_timeout_s, 0.2):
                return path
            transport.close()
        tls = self._endpoint("tls")
        if tls is None:
            return None
        try:
            transport2, stream = await asyncio.wait_for(loop.create_connection(
                lambda: _StreamPath(self), tls.host, tls.port, ssl=unverified_client_context()),
                5.0)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            log.warning("cascade %s: TLS to %s failed: %s", self.leg.leg_id, tls, exc)
            return None
        self._closers.append(transport2)
        der = transport2.get_extra_info("ssl_object").getpeercert(binary_form=True)
        if self.peer.fingerprint and cert_fingerprint(der) != self.peer.fingerprint:
            log.warning("cascade %s: %s presented a certificate that is not the one in the node "
                        "list; refusing it", self.leg.leg_id, self.peer.id)
            transport2.close()
            return None
        if await self._latch(stream, 5.0, 1.0):
            return stream
        return None

    async def _latch(self, path: _Path, timeout_s: float, retransmit_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                await self._binding(path, min(retransmit_s, deadline - time.monotonic()))
                return True
            except TimeoutError:
                retransmit_s = min(retransmit_s * 2, 1.0)
            except StunError as exc:
                log.warning("cascade %s: %s", self.leg.leg_id, exc)
                return False
        return False

    async def _binding(self, path: _Path, timeout_s: float) -> None:
        ice = self.command.ice
        request = build_leg_binding(ice.node_ufrag, ice.client_ufrag, self.leg.pwd)
        txid = transaction_id_of(request)
        future: asyncio.Future[tuple[bytes, Any]] = asyncio.get_running_loop().create_future()
        self._pending[txid] = future
        try:
            path.send(request, None)
            data, addr = await asyncio.wait_for(future, max(timeout_s, 0.01))
        finally:
            self._pending.pop(txid, None)
        answer = parse_binding_response(data, pwd=self.leg.pwd)
        if answer.error is not None:
            raise StunError(f"peer refused the cascade: {answer.error[0]} {answer.error[1]}")
        self.engine.latch_outbound(self.leg, path, addr, time.monotonic())

    def on_stun(self, data: bytes, path: _Path, addr: Any) -> None:
        if len(data) < 20:
            self.engine.drop("stun_not_stun")
            return
        future = self._pending.get(bytes(data[8:20]))
        if future is None or future.done():
            self.engine.drop("stun_unexpected")
            return
        future.set_result((data, addr))
