"""Outbound cascade legs: this node becomes a client of a peer node for one meeting.

On ``open_cascade`` the node opens a leg to the peer exactly as a client
would (docs/design.md "Media leg") with the same sans-I/O leg client
(``wire.leg_client``): an authenticated Binding Request, retransmitted per
RFC 8489 §6.2.1, on the transports of its ladder raced as the client races
its plan (RFC 8305 §5: each rung starts a stagger after the one before it, or
at once when every rung started so far has failed; the first to latch wins,
the others are closed, and the winner checks once more so that the peer's
latch, which follows the latest authenticated request, is back on it); over
TLS the peer's certificate must be the fingerprint in the node list. With UDP
blocked, media flows within about 1 RTT + 300 ms of the first working rung,
not after each dead rung's timeout in turn. The answer latches the leg on both
sides; consent checks about every 4 s, each
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Protocol

from edge.leg_transport import Deliver, LegLink, LegPath, check_pin, open_stream, open_udp
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
#: A cascade races its ladder with the client's stagger (``client.device``'s default).
STAGGER_S: Final = 0.2


def stagger_delays(ladder: Sequence[Rung], stagger_s: float = STAGGER_S) -> list[float]:
    """How long after each rung of ``ladder`` starts the next one may start at the latest.

    The client's waves (``client.device``): UDP rungs ``stagger_s / 4`` apart; the first
    stream rung ``stagger_s`` after the UDP rungs before it began; consecutive stream
    rungs ``stagger_s / 10`` apart, in ladder order (TCP, a round trip shorter than
    TLS, wins whenever both work). The last rung's delay is ``stagger_s``: nothing follows.
    """
    step, stream_step = stagger_s / 4, stagger_s / 10
    delays: list[float] = []
    udp_run = 0  # UDP rungs since the last stream rung
    for rung in ladder:
        if rung.transport is Transport.UDP:
            delays.append(step)
            udp_run += 1
            continue
        if delays and udp_run == 0:
            delays[-1] = stream_step  # after another stream rung
        elif udp_run:
            delays[-1] = max(step, stagger_s - step * (udp_run - 1))
        delays.append(stagger_s)
        udp_run = 0
    if delays:
        delays[-1] = stagger_s
    return delays


#: Opens one rung's path to the peer, packets from it to ``deliver``: the node's sockets
#: (``edge.leg_transport``), or memory in a test.
PathOpener = Callable[[Address, Rung, Deliver], Awaitable[LegPath]]


@dataclass(frozen=True, slots=True)
class RungTry:
    """One rung's attempt in the last dial: ``outcome`` is ``latched``, ``abandoned``
    (another rung latched first) or what failed; ``ms`` from the dial's start."""

    rung: RungName
    outcome: str
    ms: float


class CascadeLink:
    """One outbound cascade leg and the task that keeps it up."""

    def __init__(self, engine: Engine, command: OpenCascade, *, delay_s: float = 0.0,
                 ladder: Sequence[Rung] = CLOUD_LADDER, source_ports: range | None = None,
                 local_host: str | None = None,
                 udp_timeout_s: float = 2.0, stream_timeout_s: float = 3.0,
                 consent_interval_s: float = 4.0, consent_timeout_s: float = 30.0,
                 retry_s: float = 1.0, stagger_s: float = STAGGER_S,
                 open_path: PathOpener | None = None) -> None:
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
        self.stagger_s = stagger_s
        self._open_path = open_path or self._open_socket
        self.attempts: list[RungTry] = []  # the last dial's, one per rung started
        self.leg: Leg = engine.add_outbound_cascade(command, time.monotonic())
        self.rung: RungName | None = None
        self.local_port: int | None = None  # the UDP source port of the current path
        self.task: asyncio.Task[None] | None = None
        self.up = asyncio.Event()  # set once the peer has answered on some transport
        self._path: LegPath | None = None  # the winner's
        self._link: LegLink | None = None
        self._racing: list[LegLink] = []  # every attempt of the dial under way
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
        """One dial: race the ladder's rungs (see the module); True once one latched."""
        loop = asyncio.get_running_loop()
        self.attempts = []
        rungs = [(r, a) for r in self.ladder if (a := self._endpoint(r)) is not None]
        delays = stagger_delays([r for r, _ in rungs], self.stagger_s)
        won: asyncio.Future[LegLink] = loop.create_future()
        started = loop.time()
        tasks: list[asyncio.Task[None]] = []
        try:
            for (rung, address), delay in zip(rungs, delays, strict=True):
                tasks.append(asyncio.create_task(
                    self._attempt(rung, address, won, started)))
                deadline = loop.time() + delay
                while not won.done() and not all(t.done() for t in tasks):
                    if (left := deadline - loop.time()) <= 0:
                        break  # the stagger elapsed: start the next rung
                    await asyncio.wait(_pending(won, tasks), timeout=left,
                                       return_when=asyncio.FIRST_COMPLETED)
                if won.done():
                    break
            while not won.done() and not all(t.done() for t in tasks):
                await asyncio.wait(_pending(won, tasks), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if not won.done():
            return False
        winner = won.result()
        for link in self._racing:  # the others: closed (their outcome is recorded)
            if link is not winner:
                link.close()
                link.path.close()
        self._racing = []
        if len(tasks) > 1:
            # a slower rung may have latched the peer after the winner: the peer's latch
            # follows the latest authenticated request, so one more on the winner takes
            # it back now, and once more a stagger later for a request still in flight
            winner.driver.call(winner.leg.check_now)
            loop.call_later(self.stagger_s, self._check_again, winner)
        return True

    def _check_again(self, link: LegLink) -> None:
        if link is self._link:
            link.driver.call(link.leg.check_now)

    async def _attempt(self, rung: Rung, address: Address, won: asyncio.Future[LegLink],
                       started: float) -> None:
        """One rung of the race: open it, latch on it; the first to latch is the link."""
        loop = asyncio.get_running_loop()
        leg = self._new_leg(reliable=rung.transport is not Transport.UDP)
        link: LegLink | None = None
        outcome = "abandoned: another rung latched first"
        try:
            path = await self._open(address, rung, leg)
            link = LegLink(leg, path, partial(self._on_event, path))
            self._racing.append(link)
            result = await link.latch()
            if isinstance(result, Latched) and self._link is link:
                outcome = "latched"
                if not won.done():
                    won.set_result(link)
                return
            outcome = result.reason if isinstance(result, LatchFailed) else outcome
        except (OSError, TimeoutError, ssl.SSLError, PinMismatch) as exc:
            outcome = f"{type(exc).__name__}: {exc}"
            log.warning("cascade %s: %s to %s failed: %s", self.leg.leg_id, rung.name,
                        address, exc)
        finally:
            self.attempts.append(RungTry(rung.name, outcome,
                                         round((loop.time() - started) * 1000, 1)))
            if outcome != "latched" and link is not None:
                link.close()
                link.path.close()
                if link in self._racing:
                    self._racing.remove(link)

    async def _open(self, address: Address, rung: Rung, leg: LegClient) -> LegPath:
        path = await self._open_path(address, rung, self._received)
        if rung.transport is Transport.TLS:  # the certificate the node list published
            check_pin(path, leg)  # (a mismatch closes the path)
        return path

    async def _open_socket(self, address: Address, rung: Rung, deliver: Deliver) -> LegPath:
        if rung.transport is Transport.UDP:
            return await open_udp(address, rung.name, deliver, local_host=self.local_host,
                                  source_ports=self.source_ports, delay_s=self.delay_s,
                                  count=self.engine.drop)
        return await open_stream(address, rung.name, deliver,
                                 tls=rung.transport is Transport.TLS,
                                 timeout_s=self.stream_timeout_s, local_host=self.local_host,
                                 delay_s=self.delay_s, count=self.engine.drop,
                                 on_closed=self.engine.sink_closed)

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

    def _on_event(self, path: LegPath, event: LegEvent) -> None:
        if isinstance(event, Latched) and self._path is None:
            # the first rung to latch wins the race: the engine's leg sends on its path
            self._path = path
            self._link = next((k for k in self._racing if k.path is path), None)
            self.rung, self.local_port = path.rung, path.local_port
        if path is not self._path:
            if isinstance(event, LatchFailed):
                log.info("cascade %s: %s: %s", self.leg.leg_id, path.rung, event.reason)
            return  # a rung that lost the race
        if isinstance(event, Latched | ConsentRefreshed):
            self.engine.latch_outbound(self.leg, path, path.peer, time.monotonic())
        elif isinstance(event, ConsentExpired):
            self._lost.set()

    def _received(self, data: bytes, path: LegPath) -> None:
        """A packet from the peer: STUN to the leg client, the rest to the engine."""
        if not self.on_stun(path, data):
            self.engine.on_packet(data, path, path.peer, time.monotonic())

    def on_stun(self, path: LegPath, data: bytes) -> bool:
        """A packet from the peer: True when it was STUN (answered or dropped by the leg)."""
        link = self._link if path is self._path else next(
            (k for k in self._racing if k.path is path), None)
        if link is None:
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
        for link in self._racing:
            link.close()
            link.path.close()
        self._racing = []
        if self._link is not None:
            self._link.close()
            self._link = None
        if self._path is not None:
            self._path.close()
            self._path = None


def _pending(won: asyncio.Future[LegLink],
             tasks: Sequence[asyncio.Task[None]]) -> set[asyncio.Future[Any]]:
    """What a dial waits on: the winner, or any rung still trying ending."""
    return {won, *(t for t in tasks if not t.done())}


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
