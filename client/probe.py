"""Media node discovery: STUN-probe every endpoint of every node and measure RTT.

Seed: "The Cisco Spark app or endpoint receives a node list from Cisco
Collaboration Cloud, performs a ping by sending a STUN (RFC 5389) request,
and listens for a response from all the nodes in the list. ... The Cisco
Spark app measures the packet's round-trip time (RTT) on UDP, TCP, and TLS
based on the send requests and received responses."

Each UDP retransmission carries a fresh transaction id, so every response
matches exactly one send and the RTT has no Karn ambiguity. The requests in
flight are the sans-I/O :class:`wire.stun_transactions.TransactionTable`, and
when a probe may report early is :class:`QuietWatch`; both take ``now`` from
the one clock the asyncio glue here reads (``clock``, monotonic by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, cast

from client.errors import ProxyError
from client.proxy import ProxyConfig, open_tunnel
from wire.address import Address
from wire.errors import StunError
from wire.models import NodeInfo, ProbeResult
from wire.multiplex import FrameDecoder, encode_frame
from wire.stun import parse_binding_response
from wire.stun_transactions import Answer, TransactionTable
from wire.tls import check_pins, unverified_client_context
from wire.transports import TLS_443, RungName, Transport

#: The probe's error for a TLS rung whose certificate is not the node list's.
FINGERPRINT_MISMATCH: Final = "certificate does not match the node list (TLS inspection?)"
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    node_id: str
    rung: RungName
    transport: Transport
    address: Address
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    target: ProbeTarget
    rtt_ms: float | None
    mapped: Address | None
    error: str | None

    def result(self) -> ProbeResult:
        return ProbeResult.model_validate(
            {
                "node_id": self.target.node_id,
                "rung": self.target.rung,
                "reachable": self.rtt_ms is not None,
                "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 3),
                "mapped": None if self.mapped is None else str(self.mapped),
            }
        )


def targets(nodes: Iterable[NodeInfo], transports: Iterable[Transport]) -> list[ProbeTarget]:
    """Every endpoint of every node whose transport is in ``transports``."""
    wanted = set(transports)
    out = [
        ProbeTarget(n.id, e.rung, e.transport, Address(n.address, e.port), n.fingerprint)
        for n in nodes
        for e in n.endpoints
        if e.transport in wanted
    ]
    if Transport.HTTP_PROXY in wanted:  # through the proxy to each node's TLS 443
        out += [ProbeTarget(n.id, RungName.HTTP_PROXY, Transport.HTTP_PROXY,
                            Address(n.address, e.port), n.fingerprint)
                for n in nodes for e in n.endpoints if e.rung == TLS_443.name]
    return out


class _UdpProber(asyncio.DatagramProtocol):
    """One socket for every UDP probe; each answer goes to its request's waiter."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        # each request's waiter, answered with (RTT in ms, the response)
        self.table: TransactionTable[asyncio.Future[tuple[float, bytes]]] = TransactionTable()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # selector and uvloop UDP transports do not all subclass DatagramTransport
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        answer = self.table.receive(data, self.clock())  # late or stray: counted, dropped
        if answer is not None and not answer.key.done():
            answer.key.set_result((answer.rtt_ms, answer.response))

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable: keep waiting
        pass


#: A UDP rung is sampled up to this many times, each request sent when the one before it
#: is answered, and ranked by its lowest RTT: one sample that waited for a core (or behind
#: a burst on the path) once put a node 10 ms away behind one 40 ms away. A sample after
#: the first waits at most :func:`quiet_at` of the first's RTT, so a lost one costs little.
#: The first answer is passed on at once (``first``): the rung is reachable, and whether
#: the probe may report early is judged by when each rung first answered.
UDP_SAMPLES: Final = 3
#: Told a UDP rung's first answer (its one sample so far) before its samples end.
FirstAnswer = Callable[["ProbeOutcome"], None]


async def _udp(
    prober: _UdpProber, target: ProbeTarget, timeout_s: float, tries: int,
    samples: int = UDP_SAMPLES, first: FirstAnswer | None = None,
) -> ProbeOutcome:
    loop = asyncio.get_running_loop()
    assert prober.transport is not None
    per_try = timeout_s / tries
    rtts: list[float] = []
    mapped: Address | None = None
    misses = 0
    while len(rtts) < samples and misses < tries:
        future: asyncio.Future[tuple[float, bytes]] = loop.create_future()
        txid, request = prober.table.send(future, prober.clock())
        prober.transport.sendto(request, target.address)
        wait = per_try if not rtts else min(per_try, quiet_at(rtts[0] / 1000))
        try:
            rtt_ms, response = await asyncio.wait_for(future, wait)
        except TimeoutError:
            prober.table.forget(txid)
            if rtts:  # a later sample lost: the ones answered stand
                break
            misses += 1
            continue
        try:
            parsed = parse_binding_response(response)
        except StunError as exc:
            return ProbeOutcome(target, None, None, str(exc))
        rtts.append(rtt_ms)
        mapped = parsed.mapped or mapped  # a later answer without one (an error) keeps it
        if len(rtts) == 1 and first is not None:
            first(ProbeOutcome(target, rtt_ms, mapped, None))
    if not rtts:
        return ProbeOutcome(target, None, None, "no answer")
    return ProbeOutcome(target, min(rtts), mapped, None)


async def _stream(target: ProbeTarget, timeout_s: float,
                  proxy: ProxyConfig | None = None, clock: Clock = time.monotonic
                  ) -> ProbeOutcome:
    """One STUN transaction over a framed TCP or TLS connection (RFC 4571); for the
    http-proxy rung, TLS inside an HTTP CONNECT tunnel through ``proxy``."""
    context: ssl.SSLContext | None = None
    if target.transport in (Transport.TLS, Transport.HTTP_PROXY):
        context = unverified_client_context()  # checked against the node list below
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            if target.transport is Transport.HTTP_PROXY:
                if proxy is None:
                    return ProbeOutcome(target, None, None, "no HTTP proxy configured")
                reader, writer = await open_tunnel(proxy, target.address, timeout_s=timeout_s)
                await writer.start_tls(unverified_client_context())
            else:
                reader, writer = await asyncio.open_connection(
                    target.address.host, target.address.port, ssl=context
                )
            if context is not None and target.fingerprint:
                der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
                if not check_pins(der or b"", [target.fingerprint]).matched:
                    return ProbeOutcome(target, None, None, FINGERPRINT_MISMATCH)
            decoder = FrameDecoder()
            table: TransactionTable[None] = TransactionTable()
            best: float | None = None
            mapped = None
            # through a proxy, take the best of three transactions on the tunnel: a proxy's
            # Nagle and delayed-ACK stalls (~40 ms) must not decide between nodes
            for _ in range(3 if target.transport is Transport.HTTP_PROXY else 1):
                _, request = table.send(None, clock())
                writer.write(encode_frame(request))
                answer: Answer[None] | None = None
                while answer is None:
                    chunk = await reader.read(4096)
                    if not chunk:
                        return ProbeOutcome(target, None, None, "connection closed")
                    now = clock()
                    for frame in decoder.feed(chunk):
                        answer = table.receive(frame, now) or answer
                parsed = parse_binding_response(answer.response)
                best = answer.rtt_ms if best is None else min(best, answer.rtt_ms)
                mapped = parsed.mapped
            return ProbeOutcome(target, best, mapped, None)
    except TimeoutError:
        return ProbeOutcome(target, None, None, "no answer")
    except (OSError, ssl.SSLError, StunError, ValueError, ProxyError) as exc:
        return ProbeOutcome(target, None, None, str(exc) or type(exc).__name__)
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()


async def probe(
    all_targets: list[ProbeTarget],
    *,
    timeout_ms: int = 1000,
    tries: int = 3,
    concurrency: int = 32,
    progress: Callable[[int, int, ProbeOutcome], None] | None = None,
    proxy: ProxyConfig | None = None,
    clock: Clock = time.monotonic,
    first: FirstAnswer | None = None,
) -> list[ProbeOutcome]:
    """Probe every target concurrently (at most ``concurrency`` at once), in input order;
    ``first`` is told a UDP rung's first answer while its samples go on."""
    loop = asyncio.get_running_loop()
    transport, prober = await loop.create_datagram_endpoint(lambda: _UdpProber(clock),
                                                            local_addr=("0.0.0.0", 0))
    limit = asyncio.Semaphore(concurrency)
    done = 0

    async def one(target: ProbeTarget) -> ProbeOutcome:
        nonlocal done
        async with limit:
            if target.transport is Transport.UDP:
                outcome = await _udp(prober, target, timeout_ms / 1000, tries, first=first)
            else:
                tunnelled = target.transport is Transport.HTTP_PROXY
                outcome = await _stream(target, timeout_ms / 1000 * (3 if tunnelled else 1),
                                        proxy, clock)
        done += 1
        if progress is not None:
            progress(done, len(all_targets), outcome)
        return outcome

    try:
        return list(await asyncio.gather(*(one(t) for t in all_targets)))
    finally:
        transport.close()


#: A probe reports early once every node whose rungs are still waiting has gone quiet.
#: A node that answered on some rung is quiet once no answer came from it for
#: QUIET_FACTOR times as long as its last answer took (plus QUIET_MARGIN_S): a node's
#: answers come in waves (UDP after 1 RTT, TCP after 2, TLS after 3-4), so a silence as
#: long as everything before it means its rungs still waiting are most likely closed.
#: Each node by its own answers, never by another's: regions lie 10 ms and 300 ms away,
#: and a near node's quick TLS answer says nothing about when a far node's UDP answer
#: comes (the whitelist profile: only the far node's range is open to UDP). A node not
#: heard from at all holds the report for SILENT_SHARE of the probe timeout (500 ms of
#: 1 s: farther than any region on Earth), so one dead node does not cost the whole wait.
#: Never while a probe through the HTTP proxy is waiting: it takes a CONNECT and a
#: TCP or TLS handshake more, behind a proxy that says so when it refuses, and it is
#: the only way to the cloud's nodes from behind a hybrid node's firewall (reported
#: early, a full hybrid node had nowhere to overflow: 503 no_media_node).
QUIET_FACTOR: Final = 2.0
QUIET_MARGIN_S: Final = 0.02
SILENT_SHARE: Final = 0.5
NOT_YET: Final = "no answer yet (reported early; the probe goes on)"


def quiet_at(last_answer_s: float) -> float:
    """When a probe whose last answer came ``last_answer_s`` after it started may report."""
    return QUIET_FACTOR * last_answer_s + QUIET_MARGIN_S


class QuietWatch:
    """When a probe started at ``started`` may report early, sans-I/O: every outcome is
    passed in with the caller's ``now`` (:data:`QUIET_FACTOR`, :data:`SILENT_SHARE`)."""

    def __init__(self, targets: list[ProbeTarget], started: float, timeout_ms: int) -> None:
        self.targets = targets
        self.started = started
        self.timeout_ms = timeout_ms
        self.answered: dict[ProbeTarget, ProbeOutcome] = {}
        self._last_answer: dict[str, float] = {}  # node id -> its last answer, from the start
        self._sampling: set[ProbeTarget] = set()  # answered once, samples still going on

    def seen(self, outcome: ProbeOutcome, now: float, *, sampling: bool = False) -> None:
        """A rung's outcome; ``sampling``: its first answer while its samples go on
        (:data:`UDP_SAMPLES`). A node's waves are timed by each rung's first answer."""
        again = outcome.target in self.answered
        self.answered[outcome.target] = outcome
        if sampling:
            self._sampling.add(outcome.target)
        else:
            self._sampling.discard(outcome.target)
        if outcome.rtt_ms is not None and not again:
            self._last_answer[outcome.target.node_id] = now - self.started

    def report_at(self) -> float | None:
        """When the rungs still waiting have all gone quiet (the caller's clock), or None:
        everything is in, nothing answered yet, a probe through the proxy waits, or a rung
        that answered is still sampling. An early report carries each UDP rung's lowest
        sample: its first alone once put node-far (90 ms, one answer that waited 74 ms for
        a core) behind node-near over TLS (10 + 120 ms), and the samples after it end
        within twice :func:`quiet_at` of its RTT."""
        waiting = [t for t in self.targets if t not in self.answered]
        if not waiting or not self._last_answer or self._sampling or \
                any(t.transport is Transport.HTTP_PROXY for t in waiting):
            return None
        last = self._last_answer
        return self.started + max(quiet_at(last[t.node_id]) if t.node_id in last
                                  else SILENT_SHARE * self.timeout_ms / 1000 for t in waiting)

    def early(self) -> list[ProbeOutcome]:
        """The outcomes so far, a rung still waiting reported unreachable (:data:`NOT_YET`)."""
        return [self.answered.get(t) or ProbeOutcome(t, None, None, NOT_YET)
                for t in self.targets]


async def probe_until_quiet(
    all_targets: list[ProbeTarget],
    *,
    timeout_ms: int = 1000,
    progress: Callable[[int, int, ProbeOutcome], None] | None = None,
    proxy: ProxyConfig | None = None,
    clock: Clock = time.monotonic,
) -> tuple[list[ProbeOutcome], asyncio.Task[list[ProbeOutcome]] | None]:
    """The outcomes so far once every node still waited for went quiet (:class:`QuietWatch`),
    and the probe itself while it is still running (its task ends with every outcome).

    A rung still waiting is reported unreachable (:data:`NOT_YET`) in the early
    outcomes. A cold start on a network that drops UDP silently no longer waits
    the whole probe timeout for the UDP probes to give up before it can report
    and join (``bench/time_to_media.py``). Until some rung answers, it waits for
    the whole probe.
    """
    watch = QuietWatch(all_targets, clock(), timeout_ms)
    news = asyncio.Event()
    early = False  # once reported early, the rest of the probe shows no progress

    def seen(done: int, total: int, outcome: ProbeOutcome) -> None:
        watch.seen(outcome, clock())
        news.set()
        if progress is not None and not early:
            progress(done, total, outcome)

    def answered(outcome: ProbeOutcome) -> None:
        watch.seen(outcome, clock(), sampling=True)
        news.set()

    running = asyncio.ensure_future(
        probe(all_targets, timeout_ms=timeout_ms, progress=seen, proxy=proxy, clock=clock,
              first=answered))
    try:
        while not running.done():
            news.clear()
            waiting = asyncio.ensure_future(news.wait())
            at = watch.report_at()
            quiet = None if at is None else max(0.0, at - clock())
            try:
                await asyncio.wait({running, waiting}, timeout=quiet,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
            if not running.done() and not news.is_set() and quiet is not None:
                early = True
                return watch.early(), running
    except BaseException:  # the caller was cancelled: so is its probe, sockets closed
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        raise
    return running.result(), None
