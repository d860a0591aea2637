"""The data plane in Python: the twin of ``media_node/_plane.c``, for a node without it.

Same interface as the compiled ``Plane`` (:class:`media_node.plane.RelayCore`), same
contract: a routed source's SRTP is relayed with the route's own libsrtp sessions and
the checks in the compiled plane's order (the sender's SSRC before decryption, so the
inbound session never makes a stream for another SSRC; the tag and replay window, RFC
3711 §3.3; consent per receiver, RFC 7675 §5.1; a protected copy per receiver), counted
per leg slot with the same drop reasons; everything else is handed back untouched, in
arrival order (a routed packet read after one handed back waits for the port's next
drain). It runs where the extension could not be built, or where
``PINHOLE_NO_EXTENSIONS=1`` asks for it (:func:`media_node.plane.load_plane`); the same
contract tests run against both.
"""

from __future__ import annotations

import bisect
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from wire.errors import SrtpError
from wire.multiplex import RTCP_PACKET_TYPES, RTP_RTCP
from wire.srtp import SrtpReceiver, SrtpSender

#: as the compiled plane: ``transport.max_size`` of the listener (docs/design.md)
MAX_DATAGRAM: Final = 2048
#: UDP ports one plane reads and sends on (a node has two or three)
MAX_PORTS: Final = 16
MAX_SLOTS: Final = 1 << 20
MAX_BUCKETS: Final = 64

_COUNTS: Final = 4  # per leg slot: packets_in, bytes_in, packets_out, bytes_out

_Key = tuple[int, int, bytes, int, int]  # fd, family, address, port, scope


def _key(fd: int, address: Any) -> _Key:
    """A source as the compiled plane keys it; ValueError for what is not an IP address."""
    if not isinstance(address, tuple) or len(address) not in (2, 4) \
            or not isinstance(address[0], str) or not isinstance(address[1], int):
        raise ValueError("an address is (host, port[, flow, scope])")
    host, port = address[0], address[1]
    if not 0 <= port <= 65535:
        raise ValueError("port out of range")
    scope = int(address[3]) if len(address) == 4 else 0
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return fd, family, socket.inet_pton(family, host), port, scope
        except OSError:
            continue
    raise ValueError(f"not an IP address: {host}")


def _pointer(value: Any) -> None:
    if not isinstance(value, int) or value == 0:
        raise ValueError("a pointer must be a nonzero int")


def _slot(slot: Any) -> int:
    if not isinstance(slot, int) or not 0 <= slot < MAX_SLOTS:
        raise ValueError("slot out of range")
    return slot


@dataclass(slots=True)
class _Counters:
    counts: list[int] = field(default_factory=lambda: [0] * _COUNTS)
    drops: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1


@dataclass(frozen=True, slots=True)
class _Receiver:
    fd: int
    address: Any
    slot: int
    session: SrtpSender
    no_consent: bool


@dataclass(frozen=True, slots=True)
class _Route:
    slot: int
    session: SrtpReceiver
    ssrc: bytes
    receivers: tuple[_Receiver, ...]
    last: int  # the last receiver with consent (it seals in place); -1: none


class PythonPlane:
    """Routed SRTP relayed in Python; the compiled ``Plane``'s methods, one for one."""

    def __init__(self, *, in_limit: int, out_limit: int, every: int,
                 bounds: Sequence[float]) -> None:
        if not 0 < in_limit <= MAX_DATAGRAM or not 0 < out_limit <= in_limit:
            raise ValueError("limits must be within a datagram")
        if len(bounds) > MAX_BUCKETS:
            raise ValueError("too many buckets")
        self._in_limit = in_limit
        self._out_limit = out_limit
        self._every = every
        self._untimed = every
        self._bounds = [float(b) for b in bounds]
        self._bucket_counts = [0] * (len(self._bounds) + 1)
        self._timed_sum = 0.0
        self._routes: dict[_Key, _Route] = {}
        self._counters: dict[int, _Counters] = {}
        self._sockets: dict[int, socket.socket] = {}
        self._backlogged: set[int] = set()
        self._held: dict[int, tuple[bytes, Any]] = {}
        self._udp_errors = 0
        self.relayed = 0

    @property
    def routes(self) -> int:
        return len(self._routes)

    # ------------------------------------------------------------- routes

    def route(self, fd: int, address: Any, slot: int, ctx: int, owner: Any, ssrc: int,
              receivers: Sequence[tuple[int, Any, int, int, Any, bool]]) -> None:
        key = _key(fd, address)
        _slot(slot)
        _pointer(ctx)
        if not isinstance(owner, SrtpReceiver):
            raise ValueError("a route's session is an SrtpReceiver")
        made: list[_Receiver] = []
        last = -1
        for i, (rfd, raddress, rslot, rctx, rowner, no_consent) in enumerate(tuple(receivers)):
            _key(rfd, raddress)
            _slot(rslot)
            _pointer(rctx)
            if not isinstance(rowner, SrtpSender):
                raise ValueError("a receiver's session is an SrtpSender")
            made.append(_Receiver(rfd, raddress, rslot, rowner, bool(no_consent)))
            if not no_consent:
                last = i
        self._routes[key] = _Route(slot, owner, (ssrc & 0xFFFFFFFF).to_bytes(4, "big"),
                                   tuple(made), last)

    def unroute(self, fd: int, address: Any) -> bool:
        return self._routes.pop(_key(fd, address), None) is not None

    def backlog(self, fd: int, on: bool) -> None:
        if on:
            if fd not in self._backlogged and len(self._backlogged) == MAX_PORTS:
                raise OverflowError("too many backlogged sockets")
            self._backlogged.add(fd)
        else:
            self._backlogged.discard(fd)

    def open_port(self, sock: socket.socket) -> None:
        """A port the plane reads and sends on (the listener keeps owning the socket)."""
        self._sockets[sock.fileno()] = sock

    def forget_port(self, fd: int) -> None:
        self._sockets.pop(fd, None)
        self._held.pop(fd, None)

    # ------------------------------------------------------------- the packet path

    def _route_of(self, fd: int, data: bytes, src: Any) -> _Route | None:
        if len(data) < 12 or data[0] not in RTP_RTCP or data[1] in RTCP_PACKET_TYPES:
            return None  # SRTP, not SRTCP (RFC 7983 §7, RFC 5761 §4)
        try:
            return self._routes.get(_key(fd, src))
        except ValueError:
            return None

    def _counter(self, slot: int) -> _Counters:
        counters = self._counters.get(slot)
        if counters is None:
            counters = self._counters[slot] = _Counters()
        return counters

    def drain(self, fd: int, budget: int) -> tuple[
            list[tuple[bytes, Any]] | None, list[tuple[int, bytes, Any]] | None, bool] | None:
        """Read ``fd`` until it would block (``budget`` datagrams at most): as the
        compiled plane's ``drain``."""
        packets: list[tuple[bytes, Any]] | None = None
        sends: list[tuple[int, bytes, Any]] = []
        holding = False
        sock = self._sockets.get(fd)
        for _ in range(budget):
            held = self._held.pop(fd, None)  # what the last drain held: first
            if held is not None:
                data, src = held
            else:
                if sock is None:
                    self._udp_errors += 1
                    break
                try:
                    data, src = sock.recvfrom(MAX_DATAGRAM)
                except BlockingIOError:
                    break
                except OSError:
                    self._udp_errors += 1
                    break
            route = self._route_of(fd, data, src)
            if route is None:
                if packets is None:
                    packets = []
                packets.append((data, src))
                continue
            if packets is not None:  # it must not overtake them: held for the next drain
                self._held[fd] = (data, src)
                holding = True
                break
            self._relay_timed(route, data, sends)
        if packets is None and not sends:
            return None
        return packets, sends or None, holding

    def _relay_timed(self, route: _Route, data: bytes,
                     sends: list[tuple[int, bytes, Any]]) -> None:
        self._untimed -= 1
        if self._every <= 0 or self._untimed > 0:
            self._relay(route, data, sends)
            return
        self._untimed = self._every
        started = time.perf_counter()
        self._relay(route, data, sends)
        value = time.perf_counter() - started
        self._bucket_counts[bisect.bisect_left(self._bounds, value)] += 1
        self._timed_sum += value

    def _relay(self, route: _Route, data: bytes, sends: list[tuple[int, bytes, Any]]) -> None:
        counted = self._counter(route.slot)
        if data[8:12] != route.ssrc:  # before libsrtp: no stream for another SSRC
            counted.drop("ssrc")
            return
        if len(data) > self._in_limit:
            counted.drop("error")
            return
        inbound = route.session
        try:
            inbound.open(data)
        except SrtpError as exc:
            counted.drop(exc.reason)
            return
        counts = counted.counts
        counts[0] += 1
        counts[1] += len(data)
        self.relayed += 1
        clear = b""
        for i, x in enumerate(route.receivers):
            theirs = self._counter(x.slot)
            if x.no_consent:
                theirs.drop("no_consent")
                continue
            try:  # a clear packet past ``out_limit`` (the session's room) is refused there
                if i == route.last:  # the last one seals the clear packet where it lies
                    out = x.session.seal(inbound)
                else:
                    clear = clear or inbound.opened()
                    out = x.session.protect(clear)
            except SrtpError:
                theirs.drop("protect_error")
                continue
            self._send(x, out, sends)
            theirs.counts[2] += 1
            theirs.counts[3] += len(out)

    def _send(self, x: _Receiver, out: bytes, sends: list[tuple[int, bytes, Any]]) -> None:
        """``sendto``, or the send handed back to the port's queue (a socket Python queues
        for keeps its order: the rest follow it there)."""
        if x.fd in self._backlogged:
            sends.append((x.fd, out, x.address))
            return
        sock = self._sockets.get(x.fd)
        if sock is None:
            self._udp_errors += 1
            return
        try:
            sock.sendto(out, x.address)
        except BlockingIOError:
            if len(self._backlogged) < MAX_PORTS:
                self._backlogged.add(x.fd)
            sends.append((x.fd, out, x.address))
        except OSError:
            self._udp_errors += 1  # as UdpListener counts an OSError on send

    # ------------------------------------------------------------- reading

    def take(self) -> list[tuple[int, int, int, int, int, dict[str, int]]]:
        taken = [(slot, *c.counts, c.drops) for slot, c in sorted(self._counters.items())
                 if any(c.counts) or c.drops]
        self._counters.clear()
        return taken  # type: ignore[return-value]  # (slot, four counts, drops)

    def take_udp_errors(self) -> int:
        n, self._udp_errors = self._udp_errors, 0
        return n

    def timing(self) -> tuple[list[int], float]:
        return list(self._bucket_counts), self._timed_sum
