"""The node's UDP data plane (``media_node/_plane.c``), kept in step with the engine.

The engine decides; the plane relays. Whenever a meeting changes (a leg
latches, moves, loses or regains consent, is released, or its connection
closes) the engine calls :meth:`RelayPlane.replan` with the meeting's legs,
and each leg that can be relayed without Python gets a route in the compiled
plane:

- it is latched on a UDP port with no simulated distance (a port that, when it
  attached, gave the plane its sink: :meth:`RelayPlane.attach`), and
  is not a cascade (a cascade's SSRC check needs the meeting: Python does it);
- no leg of its meeting is a WebRTC endpoint's (its packets are translated
  per receiver: ``media_node.webrtc``);
- every other latched leg of its meeting is too (a receiver on TCP/TLS or a
  delayed port gets every packet through Python, so the whole meeting's
  packets from that sender go there).

A route holds the libsrtp sessions the engine made (``wire.srtp``), so a
source is relayed by one of the two paths at a time and the replay windows
stay whole. The plane counts per leg slot; :meth:`settle` moves the counts
into the legs, which stay the engine's one record (``Engine`` settles before
every read). What the plane cannot relay it hands back, untouched, and the
listener passes it to :meth:`Engine.on_packet`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import pylibsrtp
from pylibsrtp._binding import ffi as _ffi
from pylibsrtp._binding import lib as _lib

from media_node._plane import MAX_PORTS, Plane
from wire.srtp import BUFFER, SrtpReceiver, SrtpSender

if TYPE_CHECKING:
    from media_node.legs import Leg, Sink

#: One relayed packet in this many is timed (``pinhole_node_relay_latency_seconds``).
TIMED_EVERY: Final = 16
#: Seconds: the relay's per-packet budget is microseconds (docs/design.md, "Performance notes").
RELAY_BUCKETS: Final = (5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 5e-3, 2e-2)


def _pointer(cdata: Any) -> int:
    return int(_ffi.cast("uintptr_t", cdata))


def _context(session: SrtpReceiver | SrtpSender) -> int:
    """The libsrtp session (``srtp_t``) as an int for the plane."""
    return _pointer(session._ctx)


class Settled(NamedTuple):
    """What the plane counted for one leg since the last settle."""

    leg: Leg
    packets_in: int
    bytes_in: int
    packets_out: int
    bytes_out: int
    drops: dict[str, int]


class RelayPlane:
    """The compiled plane and the routes the engine gave it."""

    def __init__(self) -> None:
        self.plane = Plane(unprotect=_pointer(_ffi.addressof(_lib, "srtp_unprotect")),
                           protect=_pointer(_ffi.addressof(_lib, "srtp_protect")),
                           in_limit=BUFFER, out_limit=BUFFER - pylibsrtp.SRTP_MAX_TRAILER_LEN,
                           every=TIMED_EVERY, bounds=RELAY_BUCKETS)
        #: read a port until it would block: (packets for the engine, refused sends)
        self.drain = self.plane.drain
        #: a port whose sends wait in its queue (True) or go straight out (False)
        self.backlog = self.plane.backlog
        self._routed: dict[Leg, tuple[int, Any]] = {}  # leg → (fd, address) it is routed by
        self._slots: dict[Leg, int] = {}
        self._legs: dict[int, Leg] = {}
        self._free: list[int] = []
        self._ports: dict[int, Callable[[bytes, Any], None]] = {}  # fd → its send queue
        self._fast: dict[Sink, int] = {}  # sink → the fd the plane sends on for it

    def attach(self, fd: int, enqueue: Callable[[bytes, Any], None],
               sink: Sink | None = None) -> None:
        """A UDP port the plane reads; ``enqueue`` takes the sends its socket refuses.
        ``sink``: the port's, when the plane may send on ``fd`` for legs latched on it
        (``None``: every send goes through the port, e.g. a simulated distance delays them).

        Raises ValueError past ``MAX_PORTS`` ports (a node has two or three).
        """
        if fd not in self._ports and len(self._ports) >= MAX_PORTS:
            raise ValueError(f"a data plane serves at most {MAX_PORTS} UDP ports")
        self._ports[fd] = enqueue
        if sink is not None:
            self._fast[sink] = fd

    def detach(self, fd: int) -> None:
        """The port closes: no route may name ``fd`` from now on."""
        self._ports.pop(fd, None)
        self._fast = {s: f for s, f in self._fast.items() if f != fd}
        self.plane.backlog(fd, False)

    def fast_fd(self, sink: Sink | None) -> int | None:
        """The descriptor the plane may send on for legs latched on ``sink``, if any."""
        return None if sink is None else self._fast.get(sink)

    def hand_back(self, sends: Iterable[tuple[int, bytes, Any]]) -> None:
        """Relayed packets a socket refused (its buffer was full): to that port's queue."""
        for fd, data, addr in sends:
            enqueue = self._ports.get(fd)
            if enqueue is not None:
                enqueue(data, addr)

    @property
    def routes(self) -> int:
        return len(self._routed)

    def _slot(self, leg: Leg) -> int:
        slot = self._slots.get(leg)
        if slot is None:
            slot = self._free.pop() if self._free else len(self._slots)
            self._slots[leg] = slot
            self._legs[slot] = leg
        return slot

    def replan(self, members: Sequence[Leg]) -> None:
        """Route (or unroute) every leg of one meeting as it now stands."""
        for leg in members:
            self._plan(leg, members)

    def _plan(self, leg: Leg, members: Sequence[Leg]) -> None:
        fd = self.fast_fd(leg.sink)
        receivers: list[tuple[int, Any, int, int, SrtpSender, bool]] = []
        if fd is None or leg.cascade or any(m.webrtc is not None for m in members):
            fd = None
        else:
            for other in members:
                if other is leg or other.sink is None:
                    continue
                other_fd = self.fast_fd(other.sink)
                if other_fd is None:
                    fd = None
                    break
                receivers.append((other_fd, other.addr, self._slot(other),
                                  _context(other.outbound), other.outbound, other.consent_lost))
        was = self._routed.pop(leg, None)
        if fd is None:
            if was is not None:
                self.plane.unroute(*was)
            return
        if was is not None and was != (fd, leg.addr):
            self.plane.unroute(*was)
        self.plane.route(fd, leg.addr, self._slot(leg), _context(leg.inbound), leg.inbound,
                         leg.ssrc, receivers)
        self._routed[leg] = (fd, leg.addr)

    def forget(self, leg: Leg, members: Sequence[Leg]) -> None:
        """``leg`` is gone (settled before): its route, its slot, and others' routes to it."""
        was = self._routed.pop(leg, None)
        if was is not None:
            self.plane.unroute(*was)
        self.replan(members)
        slot = self._slots.pop(leg, None)
        if slot is not None:
            del self._legs[slot]
            self._free.append(slot)

    def settle(self) -> Iterator[Settled]:
        """Counts since the last settle, per leg (and per leg only: the plane's few
        engine-wide errors come from :meth:`udp_errors`)."""
        for slot, packets_in, bytes_in, packets_out, bytes_out, drops in self.plane.take():
            leg = self._legs.get(slot)
            if leg is not None:
                yield Settled(leg, packets_in, bytes_in, packets_out, bytes_out, drops)

    def udp_errors(self) -> int:
        return int(self.plane.take_udp_errors())

    def timing(self) -> tuple[list[int], float]:
        """Relayed packets timed here: a count per bucket of :data:`RELAY_BUCKETS`, +Inf
        last, and their sum in seconds."""
        counts, total = self.plane.timing()
        return list(counts), float(total)
