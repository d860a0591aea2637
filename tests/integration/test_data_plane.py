"""The node's UDP data plane (``media_node/plane.py``): compiled (``media_node/_plane.c``)
and its Python twin (``media_node/python_plane.py``), each test that states the contract
run on both (``make_plane``).

Real UDP sockets on loopback, one event loop. What the plane relays must be
what the engine's own path relays (``Engine._on_srtp``): the same bytes, the
same checks in the same order (RFC 3711 §3.3: tag, replay window; the SSRC the
cloud assigned), the same counters and drop reasons, and the plane must follow
every change the engine makes to a meeting (latch, relatch, consent lost and
regained, release, a receiver on a stream transport, a closed port). Anything
it does not relay reaches the engine untouched.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from media_node.engine import Engine
from media_node.listeners import UdpListener, bind_udp
from media_node.plane import MAX_DATAGRAM, MAX_PORTS, RELAY_BUCKETS, _context
from tests.integration.planes import MakePlane, compiled, make_plane
from tests.unit.test_engine import FakeSink, Party
from tests.waiting import HANG_S, until
from wire.rtp import build_rtcp_receiver_report, build_rtp, parse_rtp_header
from wire.srtp import SrtpKeys, SrtpReceiver, SrtpSender
from wire.stun import parse_binding_response
from wire.transports import RungName

CONSENT_S = 30.0


class Client:
    """A participant's UDP socket on loopback."""

    def __init__(self, party: Party) -> None:
        self.party = party
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)

    @property
    def addr(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return str(host), int(port)

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, ("127.0.0.1", port))

    async def recv(self, wait_s: float = 2.0) -> bytes:
        loop = asyncio.get_running_loop()
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 4096), wait_s)
        return bytes(data)

    async def silent_once(self, handled: Callable[[], bool], what: str) -> bool:
        """Nothing has arrived once ``handled()`` says the node is done with what was sent
        (its drop counted, a later packet relayed): no wait for what does not come."""
        await until(handled, what)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return True
        return False

    async def bind_leg(self, port: int) -> None:
        """The authenticated Binding Request that latches its leg (docs/design.md "Media leg")."""
        self.send(self.party.binding(), port)
        parse_binding_response(await self.recv(), pwd=self.party.pwd)

    def close(self) -> None:
        self.sock.close()


__all__ = ["make_plane"]  # the fixture: every test that takes ``node`` runs on both planes


@pytest.fixture
async def node(make_plane: MakePlane) -> AsyncIterator[tuple[Engine, UdpListener]]:
    engine = Engine("plane-test", consent_s=CONSENT_S, leg_timeout_s=90, stun_rate=0,
                    plane=make_plane())
    listener = await bind_udp(engine, "127.0.0.1", 0, RungName.UDP_5004, 0.0)
    yield engine, listener
    listener.close()


async def _meeting(engine: Engine, listener: UdpListener, n: int) -> list[Client]:
    clients = [Client(Party(chr(ord("a") + i), 1000 + i)) for i in range(n)]
    for c in clients:
        assert engine.allocate(c.party.allocate(), 0.0).ok
        await c.bind_leg(listener.port)
    return clients


async def _heard(speaker: Client, listener_: Client, port: int, payload: bytes) -> None:
    """``speaker`` sends ``payload``; ``listener_`` decrypts exactly that with its keys."""
    speaker.send(speaker.party.rtp(payload), port)
    assert listener_.party.receiver.unprotect(await listener_.recv()).endswith(payload)


Pair = tuple[Engine, UdpListener, Client, Client]


@pytest.fixture
async def pair(node: tuple[Engine, UdpListener]) -> AsyncIterator[Pair]:
    """Two participants latched on the node's UDP port: a meeting of 2."""
    engine, listener = node
    clients = await _meeting(engine, listener, 2)
    yield engine, listener, clients[0], clients[1]
    _close(clients)


def _compiled_core() -> Any:
    """The compiled plane's own type, for what only C can get wrong (references, memory)."""
    return compiled().core


def _close(clients: list[Client]) -> None:
    for c in clients:
        c.close()


async def test_a_meeting_on_udp_is_relayed_by_the_plane_with_the_engines_bytes(
        node: tuple[Engine, UdpListener]) -> None:
    """The plane's output, packet for packet, is what ``Engine.on_packet`` makes from the
    same input with the same keys (SRTP is deterministic given key and index, RFC 3711
    §4.1.1): one decrypt per input, one protect per receiver."""
    engine, listener = node
    clients = await _meeting(engine, listener, 3)
    a, b, c = clients
    twin = Engine("twin", consent_s=CONSENT_S, stun_rate=0)  # the Python path, same keys
    sinks = {x.party.leg_id: FakeSink() for x in clients}
    for x in clients:
        assert twin.allocate(x.party.allocate(), 0.0).ok
        twin.on_packet(x.party.binding(), sinks[x.party.leg_id], x.addr, 1.0)
        sinks[x.party.leg_id].sent.clear()
    try:
        assert engine.plane.routes == 3
        for i in range(20):
            packet = a.party.rtp(bytes([i]) * 160)
            a.send(packet, listener.port)
            twin.on_packet(packet, sinks[a.party.leg_id], a.addr, 2.0)
            for receiver in (b, c):
                got = await receiver.recv()
                [(expected, to)] = sinks[receiver.party.leg_id].sent
                sinks[receiver.party.leg_id].sent.clear()
                assert got == expected and to == receiver.addr
                clear = receiver.party.receiver.unprotect(got)
                assert parse_rtp_header(clear).ssrc == a.party.ssrc
        assert engine.plane.relayed == 20  # the plane did it, not the engine's path
        stats = engine.stats()
        assert (stats["leg-a"].packets_in, stats["leg-a"].bytes_in) == (20, 20 * 182)
        assert stats["leg-b"].packets_out == stats["leg-c"].packets_out == 20
        assert stats == twin.stats()
        assert engine.packets_out == 40
    finally:
        _close(clients)


async def test_bad_packets_are_dropped_for_the_reasons_the_engine_gives(
        pair: Pair) -> None:
    """RFC 3711 §3.3 step 5 (a tag that fails: ``auth``), §3.3.2 (a replay: ``replay``),
    the SSRC the cloud assigned (``ssrc``); SRTCP (RFC 5761 §4) goes to the engine."""
    engine, listener, a, b = pair
    good = a.party.rtp(b"x" * 100)
    forged = good[:-1] + bytes([good[-1] ^ 1])
    a.send(forged, listener.port)
    a.send(good, listener.port)
    a.send(good, listener.port)  # replayed
    a.party.seq += 1
    wrong_ssrc = a.party.sender.protect(build_rtp(
        payload_type=0, sequence=a.party.seq, timestamp=0, ssrc=b.party.ssrc,
        payload=b"y"))
    a.send(wrong_ssrc, listener.port)
    assert b.party.receiver.unprotect(await b.recv()) is not None
    assert await b.silent_once(lambda: sum(engine.drops.values()) == 3, "3 packets dropped")
    assert engine.drops == {"auth": 1, "replay": 1, "ssrc": 1}
    assert engine.legs["leg-a"].drops == {"auth": 1, "replay": 1, "ssrc": 1}
    report = a.party.sender.protect_rtcp(build_rtcp_receiver_report(ssrc=a.party.ssrc))
    a.send(report, listener.port)
    assert b.party.receiver.unprotect_rtcp(await b.recv())  # relayed by the engine
    assert engine.plane.relayed == 1


async def test_hostile_datagrams_from_a_latched_source_never_stop_the_relay(
        pair: Pair) -> None:
    """Bad input from the network is dropped and counted (house rule), whatever its size:
    empty, shorter than an RTP header, RTP-looking noise (its SSRC not the sender's:
    ``ssrc``, before decryption), the largest datagram read."""
    engine, listener, a, b = pair
    noise = [b"", b"\x80", b"\x80" * 11, b"\x80" + os.urandom(40), b"\xbf" * 600,
             b"\x80\x00" + os.urandom(MAX_DATAGRAM - 2),
             b"\x80\x00" + os.urandom(MAX_DATAGRAM + 500)]  # truncated on read
    for _ in range(20):
        for junk in noise:
            a.send(junk, listener.port)
        await asyncio.sleep(0.02)  # read before the socket's receive buffer overflows
    a.send(a.party.rtp(b"after"), listener.port)
    clear = b.party.receiver.unprotect(await b.recv())
    assert clear.endswith(b"after")
    drops = engine.drops
    assert sum(drops.values()) == len(noise) * 20
    assert set(drops) <= {"demux", "auth", "error", "replay", "ssrc"}
    assert engine.stats()["leg-a"].packets_in == 1


async def test_the_plane_follows_consent_lost_and_regained(
        pair: Pair) -> None:
    """RFC 7675 §5.1: no media to a leg whose consent expired (``no_consent``, as the
    engine counts it) until it is refreshed, which the plane must see at once."""
    engine, listener, a, b = pair
    engine.tick(time.monotonic() + CONSENT_S + 10)  # both legs' consent expires (the
    # listener stamps packets with the monotonic clock)
    a.send(a.party.rtp(b"lost"), listener.port)
    assert await b.silent_once(lambda: bool(engine.drops), "the packet dropped")
    assert engine.drops == {"no_consent": 1}
    await b.bind_leg(listener.port)  # consent refreshed on the same path
    await _heard(a, b, listener.port, b"back")
    assert engine.plane.relayed == 2


async def test_a_receiver_on_a_stream_sends_the_meeting_through_the_engine(
        pair: Pair) -> None:
    """The plane writes only to UDP ports: once a leg of the meeting is on TCP/TLS (here a
    sink that is not a UDP port), its senders are relayed by the engine, every receiver
    served; when that leg goes, the plane takes them back."""
    engine, listener, a, b = pair
    stream = Party("s", 3000)
    tcp = FakeSink(RungName.TCP_5004)
    assert engine.allocate(stream.allocate(), 0.0).ok
    engine.on_packet(stream.binding(), tcp, ("127.0.0.1", 1), 1.0)
    tcp.sent.clear()
    assert engine.plane.routes == 0  # a's and b's senders: the stream leg hears them
    await _heard(a, b, listener.port, b"to-all")
    [(data, _)] = tcp.sent
    assert stream.receiver.unprotect(data).endswith(b"to-all")
    assert engine.plane.relayed == 0
    engine.release(stream.leg_id)
    assert engine.plane.routes == 2
    await _heard(a, b, listener.port, b"plane")
    assert engine.plane.relayed == 1


async def test_a_relatched_leg_is_routed_from_its_new_address_only(
        pair: Pair) -> None:
    """docs/design.md "Media leg": a leg's path moves only with an authenticated Binding
    Request; its old address is then unlatched, for the plane as for the engine."""
    engine, listener, a, b = pair
    moved = Client(a.party)
    try:
        await moved.bind_leg(listener.port)
        assert engine.legs["leg-a"].addr == moved.addr
        a.send(a.party.rtp(b"old"), listener.port)
        moved.send(a.party.rtp(b"new"), listener.port)
        assert b.party.receiver.unprotect(await b.recv()).endswith(b"new")
        assert await b.silent_once(lambda: bool(engine.drops), "the old address's dropped")
        assert engine.drops == {"unlatched": 1}
        assert engine.plane.routes == 2
    finally:
        moved.close()


async def test_a_released_leg_leaves_no_route_and_its_counts_are_kept(
        pair: Pair) -> None:
    engine, listener, a, b = pair
    a.send(a.party.rtp(b"one"), listener.port)
    await b.recv()
    released = engine.release("leg-b")
    assert released is not None and released.packets_out == 1  # settled before retiring
    assert engine.packets_out == 1 and engine.packets_in == 1
    assert engine.plane.routes == 1  # a's, to nobody
    a.send(a.party.rtp(b"two"), listener.port)
    assert await b.silent_once(lambda: engine.stats()["leg-a"].packets_in == 2,
                               "the node took a's second packet")
    assert engine.stats()["leg-a"].packets_in == 2 and engine.packets_out == 1
    engine.release("leg-a")
    assert engine.plane.routes == 0


async def test_a_closed_port_takes_every_route_through_it_away(
        pair: Pair) -> None:
    """A route names a socket descriptor: one left behind a closed port could send on
    whatever socket reuses the number."""
    engine, listener, _, _ = pair
    assert engine.plane.routes == 2
    listener.close()
    assert engine.plane.routes == 0
    assert all(leg.sink is None for leg in engine.legs.values())


async def test_relayed_packets_are_timed_in_the_relay_histogram(
        pair: Pair) -> None:
    """``pinhole_node_relay_latency_seconds`` keeps timing one packet in 16 (metrics.py)."""
    engine, listener, a, b = pair
    for _ in range(32):
        a.send(a.party.rtp(b"t"), listener.port)
        await b.recv()
    counts, total = engine.plane.timing()
    assert sum(counts) == 2 and len(counts) == len(RELAY_BUCKETS) + 1
    assert 0 < total < 1


def test_the_plane_refuses_bad_routes_with_an_error_not_a_crash(make_plane: MakePlane) -> None:
    """The control plane's arguments are checked: an address that is not IP, a port out
    of range, a null session, a slot out of range are ValueErrors."""
    plane = make_plane().core
    keys = SrtpKeys.generate()
    inbound, outbound = SrtpReceiver(keys), SrtpSender(keys)
    bad: list[tuple[Any, ...]] = [
        (3, ("not-an-ip", 1), 0, 1, inbound, 1, []),
        (3, ("127.0.0.1", 70000), 0, 1, inbound, 1, []),
        (3, ("127.0.0.1", 1), 0, 0, inbound, 1, []),
        (3, ("127.0.0.1", 1), -1, 1, inbound, 1, []),
        (3, ("127.0.0.1", 1), 0, 1, inbound, 1, [(4, ("::1", 1), 1 << 30, 1, outbound, False)]),
        (3, "127.0.0.1", 0, 1, inbound, 1, []),
    ]
    for args in bad:
        with pytest.raises(ValueError):
            plane.route(*args)
    assert plane.routes == 0


def test_routes_replaced_or_removed_keep_no_reference() -> None:
    """A route holds its sessions alive and lets them go when replaced or removed: memory
    stays flat however often meetings change."""
    plane = _compiled_core()
    owner = object()
    receivers = [(4, ("::1", 5000, 0, 0), 1, 1, owner, False)]
    before = sys.getrefcount(owner)
    for _ in range(1000):
        plane.route(3, ("127.0.0.1", 5000), 0, 1, owner, 7, receivers)
    assert sys.getrefcount(owner) == before + 2 and plane.routes == 1
    assert plane.unroute(3, ("127.0.0.1", 5000))
    assert not plane.unroute(3, ("127.0.0.1", 5000))
    assert sys.getrefcount(owner) == before and plane.routes == 0


def test_an_uninitialised_plane_is_an_error_not_a_crash() -> None:
    """Found by review: ``Plane.__new__`` without ``__init__`` dereferenced a null table."""
    kind: Any = type(_compiled_core())
    bare = kind.__new__(kind)
    with pytest.raises(RuntimeError):
        bare.unroute(3, ("127.0.0.1", 1))
    with pytest.raises(RuntimeError):
        bare.drain(3, 1)


def test_receivers_changed_while_a_route_is_read_are_a_copy() -> None:
    """Found by review (AddressSanitizer): parsing a receiver runs Python (``__bool__``
    of its consent flag); a list emptied from there freed the tuple being parsed."""
    plane = _compiled_core()
    receivers: list[tuple[int, Any, int, int, object, Any]] = []

    class Emptying:
        def __bool__(self) -> bool:
            receivers.clear()
            return False

    receivers += [(5, ("127.0.0.1", 9), 0, 1, object(), Emptying())]
    receivers += [(5, ("127.0.0.1", 9), 0, 1, object(), False) for _ in range(3)]
    plane.route(5, ("127.0.0.1", 1000), 0, 1, object(), 1, receivers)
    assert plane.routes == 1


def finalizer_during_drain() -> tuple[int, list[int]]:
    """One packet relayed to 32 receivers while a finalizer that replaces its route
    waits in the collector: (sends handed back, packets out the finalizer saw)."""
    plane = _compiled_core()
    node = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    node.bind(("127.0.0.1", 0))
    node.setblocking(False)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    up, down = SrtpKeys.generate(), SrtpKeys.generate()
    sender, inbound, outbound = SrtpSender(up), SrtpReceiver(up), SrtpSender(down)
    source = client.getsockname()
    receivers = [(node.fileno(), ("127.0.0.1", 9), i, _context(outbound), outbound, False)
                 for i in range(32)]
    plane.route(node.fileno(), source, 0, _context(inbound), inbound, 1234, receivers)
    plane.backlog(node.fileno(), True)  # every relayed send is handed back to Python
    served_before: list[int] = []

    class Replacing:
        me: object = None

        def __del__(self) -> None:
            served_before.append(sum(counted[3] for counted in plane.take()))
            plane.route(node.fileno(), source, 0, _context(inbound), inbound, 1234, [])

    thresholds = gc.get_threshold()
    gc.disable()
    try:
        garbage = Replacing()
        garbage.me = garbage  # a cycle: freed by the next collection
        del garbage
        client.sendto(sender.protect(build_rtp(payload_type=0, sequence=1, timestamp=0,
                                               ssrc=1234, payload=b"x" * 100)),
                      node.getsockname())
        assert select.select([node], [], [], HANG_S)[0], "the packet never arrived"
        drain, fd = plane.drain, node.fileno()  # nothing the collector tracks is made
        gc.set_threshold(1)                     # between enabling it and the drain
        gc.enable()
        got = drain(fd, 64)
        gc.collect()
    finally:
        gc.set_threshold(*thresholds)
        gc.enable()
        node.close()
        client.close()
    sends = got[1] if got is not None else None
    return (0 if sends is None else len(sends)), served_before


def test_a_finalizer_that_changes_routes_waits_for_the_drain() -> None:
    """Found by review (AddressSanitizer): Python collects garbage inside allocations, so
    a finalizer could replace a route while the plane was relaying through it, and the
    rest of the relay read freed memory. The collector is held off for a drain: a
    finalizer runs after the relay, when every receiver has been served and counted.
    Run in an interpreter of its own (the test runner's own objects change when the
    collector runs)."""
    code = ("import json; from tests.integration.test_data_plane import "
            "finalizer_during_drain as f; print(json.dumps(f()))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [32, [32]]


def test_a_plane_refuses_more_ports_than_it_can_mark_queued(make_plane: MakePlane) -> None:
    """The plane marks a port whose sends wait in its queue in a fixed table; a port past
    it is refused when it is attached (set-up), never at the moment a send is refused."""
    plane = make_plane()
    ports = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(MAX_PORTS + 1)]
    try:
        for port in ports[:MAX_PORTS]:
            plane.attach(port, lambda data, addr: None)
        plane.attach(ports[0], lambda data, addr: None)  # the same port again: still one
        with pytest.raises(ValueError, match="at most"):
            plane.attach(ports[MAX_PORTS], lambda data, addr: None)
        for port in ports[:MAX_PORTS]:
            plane.backlog(port.fileno(), True)  # every attached port can be marked
    finally:
        for port in ports:
            port.close()
