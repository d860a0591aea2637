"""The node's UDP data plane behind one seam, kept in step with the engine.

The engine decides; the plane relays. Whenever a meeting changes (a leg
latches, moves, loses or regains consent, is released, or its connection
closes) the engine calls :meth:`Plane.replan` with the meeting's legs, and
each leg that can be relayed without the engine gets a route in the plane:

- it is latched on a UDP port (a port that, when it attached, gave the plane its
  sink: :meth:`Plane.attach`; a port at a simulated distance holds itself
  backlogged, so what the plane protects for it comes back and leaves when due), and
  is not a cascade (a cascade's SSRC check needs the meeting: Python does it);
- no leg of its meeting is a WebRTC endpoint's (its packets are translated
  per receiver: ``media_node.webrtc``);
- every other latched leg of its meeting is too (a receiver on TCP/TLS gets every
  packet through Python, so the whole meeting's packets from that sender go there).

A route holds the libsrtp sessions the engine made (``wire.srtp``), so a
source is relayed by one of the two paths at a time and the replay windows
stay whole. The plane counts per leg slot; :meth:`Plane.settle` moves the
counts into the legs, which stay the engine's one record (``Engine`` settles
before every read). What the plane does not relay it hands back, untouched and
in arrival order, and the listener passes it to :meth:`Engine.on_packet`.

Two planes keep this one contract: the compiled one (``media_node/_plane.c``, an
optional extension: this is the only module that imports it) and its Python twin
(:mod:`media_node.python_plane`), each a :class:`RelayCore` under a
:class:`RelayPlane`. :func:`load_plane` takes the compiled one unless it was not
built, ``PINHOLE_NO_EXTENSIONS=1`` asks for Python, or pylibsrtp's libsrtp functions
are not of the type the compiled plane calls them as (:data:`SRTP_SIGNATURES`); the
plane says which it is, and why, in ``kind`` and ``reason``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

import pylibsrtp
from pylibsrtp._binding import ffi as _ffi
from pylibsrtp._binding import lib as _lib

from media_node.python_plane import MAX_DATAGRAM as MAX_DATAGRAM
from media_node.python_plane import MAX_PORTS as MAX_PORTS
from media_node.python_plane import PythonPlane
from wire.srtp import BUFFER, SrtpReceiver, SrtpSender

try:
    from media_node import _plane as _compiled
except ImportError:  # installed without it (no C compiler): Python relays
    _compiled = None  # type: ignore[assignment]
    _NOT_BUILT = "no module media_node._plane"
else:
    _NOT_BUILT = ""

if TYPE_CHECKING:
    from media_node.legs import Leg, Sink

log = logging.getLogger(__name__)

#: One relayed packet in this many is timed (``pinhole_node_relay_latency_seconds``).
TIMED_EVERY: Final = 16
#: Seconds: the relay's per-packet budget is microseconds (docs/design.md, "Performance notes").
RELAY_BUCKETS: Final = (5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 5e-3, 2e-2)
#: the variable that asks for the Python plane, as aiohttp's and yarl's ask for theirs
NO_EXTENSIONS: Final = "PINHOLE_NO_EXTENSIONS"
#: The C types the compiled plane calls libsrtp's functions as (``srtp_call`` in
#: _plane.c), as cffi spells pylibsrtp's declarations. libsrtp 3 changes
#: ``srtp_protect``'s arguments: a plane calling it the old way would corrupt memory.
SRTP_SIGNATURES: Final[Mapping[str, str]] = {
    "srtp_unprotect": "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)",
    "srtp_protect": "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)",
}


class PlaneKind(StrEnum):
    """Which plane relays: ``pinhole_node_plane_info{plane=...}``."""

    COMPILED = "compiled"
    PYTHON = "python"


class PlaneReason(StrEnum):
    """Why that plane: ``pinhole_node_plane_info{reason=...}``."""

    BUILT = "built"  # the compiled plane, its libsrtp types checked
    ASKED = "asked"  # PINHOLE_NO_EXTENSIONS=1 (or a test) asked for Python
    NOT_BUILT = "not_built"  # the extension is not installed (built without a C compiler)
    SRTP_MISMATCH = "srtp_mismatch"  # pylibsrtp's libsrtp is not what the plane calls


def _pointer(cdata: Any) -> int:
    return int(_ffi.cast("uintptr_t", cdata))


def _context(session: SrtpReceiver | SrtpSender) -> int:
    """The libsrtp session (``srtp_t``) as an int for the plane."""
    return _pointer(session._ctx)


def srtp_signatures() -> dict[str, str]:
    """The C types of the libsrtp functions the compiled plane calls, as pylibsrtp's cffi
    declares them."""
    return {name: str(_ffi.typeof(_ffi.addressof(_lib, name)).cname)
            for name in SRTP_SIGNATURES}


class Settled(NamedTuple):
    """What the plane counted for one leg since the last settle."""

    leg: Leg
    packets_in: int
    bytes_in: int
    packets_out: int
    bytes_out: int
    drops: dict[str, int]


#: a drain's answer: (packets for the engine, refused sends, a routed packet held back)
Drained = tuple[list[tuple[bytes, Any]] | None, list[tuple[int, bytes, Any]] | None, bool]


class RelayCore(Protocol):
    """The per-packet half of a plane: the compiled ``Plane`` or :class:`PythonPlane`."""

    @property
    def routes(self) -> int: ...
    @property
    def relayed(self) -> int: ...
    def route(self, fd: int, address: Any, slot: int, ctx: int, owner: Any, ssrc: int,
              receivers: Sequence[tuple[int, Any, int, int, Any, bool]]) -> None: ...
    def unroute(self, fd: int, address: Any) -> bool: ...
    def backlog(self, fd: int, on: bool) -> None: ...
    def drain(self, fd: int, budget: int) -> Drained | None: ...
    def open_port(self, sock: Any) -> None: ...
    def forget_port(self, fd: int) -> None: ...
    def take(self) -> list[tuple[int, int, int, int, int, dict[str, int]]]: ...
    def take_udp_errors(self) -> int: ...
    def timing(self) -> tuple[list[int], float]: ...


class Plane(Protocol):
    """What the engine and the UDP listeners ask of a data plane, whichever relays."""

    @property
    def kind(self) -> PlaneKind: ...
    @property
    def reason(self) -> PlaneReason: ...
    @property
    def routes(self) -> int: ...
    @property
    def relayed(self) -> int: ...
    def attach(self, sock: socket.socket, enqueue: Callable[[bytes, Any], None],
               sink: Sink | None = None) -> None: ...
    def detach(self, fd: int) -> None: ...
    def fast_fd(self, sink: Sink | None) -> int | None: ...
    def drain(self, fd: int, budget: int) -> Drained | None: ...
    def hand_back(self, sends: Iterable[tuple[int, bytes, Any]]) -> None: ...
    def backlog(self, fd: int, on: bool) -> None: ...
    def replan(self, members: Sequence[Leg]) -> None: ...
    def forget(self, leg: Leg, members: Sequence[Leg]) -> None: ...
    def settle(self) -> Iterator[Settled]: ...
    def udp_errors(self) -> int: ...
    def timing(self) -> tuple[list[int], float]: ...


class RelayPlane:
    """A plane's routes, kept by the engine's legs, over one :class:`RelayCore`."""

    def __init__(self, core: RelayCore, kind: PlaneKind, reason: PlaneReason) -> None:
        self.core = core
        self.kind: Final = kind
        self.reason: Final = reason
        #: read a port until it would block: (packets for the engine, refused sends, held)
        self.drain = core.drain
        #: a port whose sends wait in its queue (True) or go straight out (False)
        self.backlog = core.backlog
        self._routed: dict[Leg, tuple[int, Any]] = {}  # leg → (fd, address) it is routed by
        self._slots: dict[Leg, int] = {}
        self._legs: dict[int, Leg] = {}
        self._free: list[int] = []
        self._ports: dict[int, Callable[[bytes, Any], None]] = {}  # fd → its send queue
        self._fast: dict[Sink, int] = {}  # sink → the fd the plane sends on for it

    def attach(self, sock: socket.socket, enqueue: Callable[[bytes, Any], None],
               sink: Sink | None = None) -> None:
        """A UDP port the plane reads; ``enqueue`` takes the sends its socket refuses.
        ``sink``: the port's, when the plane may relay for legs latched on it (every UDP
        listener gives it; ``None``: the plane relays nothing to or from this port).

        Raises ValueError past ``MAX_PORTS`` ports (a node has two or three).
        """
        fd = sock.fileno()
        if fd not in self._ports and len(self._ports) >= MAX_PORTS:
            raise ValueError(f"a data plane serves at most {MAX_PORTS} UDP ports")
        self._ports[fd] = enqueue
        self.core.open_port(sock)
        if sink is not None:
            self._fast[sink] = fd

    def detach(self, fd: int) -> None:
        """The port closes: no route may name ``fd`` from now on."""
        self._ports.pop(fd, None)
        self._fast = {s: f for s, f in self._fast.items() if f != fd}
        self.core.backlog(fd, False)
        self.core.forget_port(fd)

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

    @property
    def relayed(self) -> int:
        """SRTP packets this plane relayed (the engine's path relayed the rest)."""
        return self.core.relayed

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
        # content is the engine's (it checks the floor per packet); so are cascades and
        # WebRTC legs
        if fd is None or leg.cascade or leg.content or any(m.webrtc is not None
                                                          for m in members):
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
                self.core.unroute(*was)
            return
        if was is not None and was != (fd, leg.addr):
            self.core.unroute(*was)
        self.core.route(fd, leg.addr, self._slot(leg), _context(leg.inbound), leg.inbound,
                        leg.ssrc, receivers)
        self._routed[leg] = (fd, leg.addr)

    def forget(self, leg: Leg, members: Sequence[Leg]) -> None:
        """``leg`` is gone (settled before): its route, its slot, and others' routes to it."""
        was = self._routed.pop(leg, None)
        if was is not None:
            self.core.unroute(*was)
        self.replan(members)
        slot = self._slots.pop(leg, None)
        if slot is not None:
            del self._legs[slot]
            self._free.append(slot)

    def settle(self) -> Iterator[Settled]:
        """Counts since the last settle, per leg (and per leg only: the plane's few
        engine-wide errors come from :meth:`udp_errors`)."""
        for slot, packets_in, bytes_in, packets_out, bytes_out, drops in self.core.take():
            leg = self._legs.get(slot)
            if leg is not None:
                yield Settled(leg, packets_in, bytes_in, packets_out, bytes_out, drops)

    def udp_errors(self) -> int:
        return int(self.core.take_udp_errors())

    def timing(self) -> tuple[list[int], float]:
        """Relayed packets timed here: a count per bucket of :data:`RELAY_BUCKETS`, +Inf
        last, and their sum in seconds."""
        counts, total = self.core.timing()
        return list(counts), float(total)


# ------------------------------------------------------------- which plane


class PlaneUnavailable(Exception):
    """The compiled plane cannot be used here; ``reason`` says why."""

    def __init__(self, reason: PlaneReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


#: what either plane relays: a datagram in pylibsrtp's buffer, a protected copy with room
#: for its trailer
IN_LIMIT: Final = BUFFER
OUT_LIMIT: Final = BUFFER - pylibsrtp.SRTP_MAX_TRAILER_LEN


def python_plane(reason: PlaneReason = PlaneReason.ASKED) -> RelayPlane:
    """The Python plane (:mod:`media_node.python_plane`)."""
    core = PythonPlane(in_limit=IN_LIMIT, out_limit=OUT_LIMIT, every=TIMED_EVERY,
                       bounds=RELAY_BUCKETS)
    return RelayPlane(core, PlaneKind.PYTHON, reason)


def compiled_plane(signatures: Mapping[str, str] | None = None) -> RelayPlane:
    """The compiled plane, once libsrtp's functions are checked to be of the type it calls
    them as (``signatures``: as found, :func:`srtp_signatures` by default). Raises
    :class:`PlaneUnavailable` when it is not built or the types differ."""
    if _compiled is None:
        raise PlaneUnavailable(PlaneReason.NOT_BUILT,
                               f"the compiled data plane is not installed ({_NOT_BUILT})")
    found = srtp_signatures() if signatures is None else signatures
    wrong = {name: found.get(name) for name, expected in SRTP_SIGNATURES.items()
             if found.get(name) != expected}
    if wrong:
        raise PlaneUnavailable(PlaneReason.SRTP_MISMATCH, "pylibsrtp's libsrtp declares " + (
            "; ".join(f"{name} as {kind!r}, not {SRTP_SIGNATURES[name]!r}"
                      for name, kind in wrong.items())))
    core = _compiled.Plane(unprotect=_pointer(_ffi.addressof(_lib, "srtp_unprotect")),
                           protect=_pointer(_ffi.addressof(_lib, "srtp_protect")),
                           in_limit=IN_LIMIT, out_limit=OUT_LIMIT, every=TIMED_EVERY,
                           bounds=RELAY_BUCKETS)
    return RelayPlane(core, PlaneKind.COMPILED, PlaneReason.BUILT)


def asks_for_python(environ: Mapping[str, str]) -> bool:
    """``PINHOLE_NO_EXTENSIONS`` set to anything but empty or 0 (as aiohttp reads its own)."""
    return environ.get(NO_EXTENSIONS, "").strip() not in ("", "0")


def load_plane(environ: Mapping[str, str] | None = None,
               signatures: Mapping[str, str] | None = None) -> RelayPlane:
    """The compiled plane when it is built, checked and not declined; else the Python
    plane, with a warning when the compiled one was wanted but cannot run.

    ``environ``: where ``PINHOLE_NO_EXTENSIONS`` is read (``os.environ`` by default);
    ``signatures``: libsrtp's function types as found (:func:`srtp_signatures`)."""
    if asks_for_python(os.environ if environ is None else environ):
        return python_plane(PlaneReason.ASKED)
    try:
        return compiled_plane(signatures)
    except PlaneUnavailable as exc:
        log.warning("data plane: Python, not compiled: %s%s", exc,
                    " (install a C compiler and reinstall to build it)"
                    if exc.reason is PlaneReason.NOT_BUILT else
                    " (the compiled plane would corrupt memory with it: pin pylibsrtp to a "
                    "release pyproject.toml allows)")
        return python_plane(exc.reason)
