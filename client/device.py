"""A device, as an app embeds it: register, discover, report, join, connect.

The seed's order: "Probing is not part of the meeting setup, but is performed
when the Cisco Spark app registers to the cloud."
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from websockets.exceptions import WebSocketException

from client.api import CloudApi
from client.cache import ReportCache, local_address_towards
from client.call import Call, CallOptions, CallReport, CallTimings, RungAttempt
from client.content import Content
from client.errors import ApiError, InspectionError, MediaError, ProxyError
from client.inspection import inspected_nodes, inspection_message
from client.media import MediaSession
from client.probe import ProbeOutcome, ProbeTarget, probe_until_quiet, targets
from client.proxy import ProxyConfig, open_tunnel
from wire.address import Address
from wire.models import (
    DeviceRegistered,
    DeviceRegistration,
    Endpoint,
    Event,
    Joined,
    JoinRequest,
    NodeInfo,
    ReachabilityReport,
)
from wire.transports import (
    PROFILES,
    RUNGS_BY_NAME,
    DeviceProfile,
    RungName,
    Transport,
    check_media,
)

log = logging.getLogger(__name__)


#: Pauses before each new try of a join the cloud answered ``503 node_unavailable``: a
#: node reconnects its control channel at once, and one that stays silent is unhealthy
#: after three missed heartbeats (1.5 s by default); 3.5 s in all.
JOIN_RETRY_PAUSES_S = (0.5, 1.0, 2.0)


async def _noop(event: Event) -> None:
    return None


@dataclass
class Device:
    api: CloudApi
    profile: DeviceProfile = DeviceProfile.DESKTOP
    registration: DeviceRegistered | None = None
    outcomes: list[ProbeOutcome] = field(default_factory=list)
    attempts: list[RungAttempt] = field(default_factory=list)
    cache: ReportCache | None = None
    proxy: ProxyConfig | None = None  # media on the http-proxy rung goes through it
    source: str = ""  # where the last discovery came from: "probe" or "cache"
    events_seen: int = 0
    reconnects: int = 0
    #: how the device waits between tries of a join (a fake clock's in tests)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    _relatches: set[asyncio.Task[None]] = field(default_factory=set, repr=False)
    #: the node list of the registration, until the first probe after it uses it
    _registered_nodes: list[NodeInfo] | None = field(default=None, repr=False)
    _completing: asyncio.Task[None] | None = field(default=None, repr=False)

    async def register(self, org: str, enrollment_key: str, name: str,
                       device_id: str | None = None) -> DeviceRegistered:
        """Register (again, with ``device_id``: that revokes the device's older tokens)."""
        body: dict[str, str] = {"org": org, "enrollment_key": enrollment_key, "name": name,
                                "profile": self.profile.value}
        if device_id:
            body["device_id"] = device_id
        self.registration = await self.api.register(DeviceRegistration.model_validate(body))
        self._registered_nodes = self.registration.nodes
        return self.registration

    def network(self) -> str:
        """This device's network identity: its local address towards the cloud."""
        host = urlsplit(self.api.base_url).hostname or ""
        return local_address_towards(host)

    async def discover(
        self,
        progress: Callable[[int, int, ProbeOutcome], None] | None = None,
        *,
        force: bool = False,
    ) -> list[ProbeOutcome]:
        """Probe every node of the (fresh) node list and report the result to the cloud.

        With a cache, a report younger than the probe TTL from the same network
        is reused (``self.source == "cache"``) and only re-sent when the cloud
        no longer has it; ``force`` probes regardless.
        """
        if self.registration is None:
            raise RuntimeError("register first")
        policy = self.registration.probe_policy
        device_id = self.registration.device_id
        network = self.network()
        if self.cache is not None and not force:
            cached = self.cache.load(device_id, network)
            if cached is not None:
                self.source = "cache"
                try:
                    await self.api.get_reachability()
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                    await self.api.put_reachability(cached.report)
                self.outcomes = _outcomes_from(cached.report, self.registration.nodes)
                return self.outcomes
        # the list that came with the registration just now is fresh: a cold start
        # probes it at once (a GET /v1/nodes first cost one more round trip)
        fresh, self._registered_nodes = self._registered_nodes, None
        nodes = fresh if fresh is not None else (await self.api.nodes()).nodes
        transports = list(policy.transports)
        if self.proxy is not None and Transport.HTTP_PROXY in PROFILES[self.profile].media:
            transports.append(Transport.HTTP_PROXY)  # the last rung is probed through the proxy
        self.outcomes, running = await probe_until_quiet(
            targets(nodes, transports), timeout_ms=policy.timeout_ms, progress=progress,
            proxy=self.proxy,
        )
        self.source = "probe"
        report = _report(network, self.outcomes)
        await self.api.put_reachability(report)
        if running is None:
            if self.cache is not None:
                self.cache.store(device_id, network, report, policy.ttl_s)
        else:  # reported early: the whole probe replaces it when it ends
            if self._completing is not None:
                self._completing.cancel()
            self._completing = asyncio.ensure_future(
                self._complete(running, network, report, policy.ttl_s))
        return self.outcomes

    async def _complete(self, running: asyncio.Task[list[ProbeOutcome]], network: str,
                        early: ReachabilityReport, ttl_s: int) -> None:
        """The probe reported early goes on to its end: report again if it learnt more
        (a rung that answered late), and keep that report in the cache."""
        try:
            self.outcomes = outcomes = await running  # each rung's own end, not "not yet"
            report = _report(network, outcomes)
            if report.results != early.results:
                await self.api.put_reachability(report)
                log.info("probe finished after its early report: %d more rung(s) reached",
                         sum(r.reachable for r in report.results)
                         - sum(r.reachable for r in early.results))
            if self.cache is not None and self.registration is not None:
                self.cache.store(self.registration.device_id, network, report, ttl_s)
        except (ApiError, aiohttp.ClientError, OSError) as exc:
            log.info("the probe's final report was not sent (%s); the early one stands", exc)
        finally:
            running.cancel()

    async def finished(self) -> list[ProbeOutcome]:
        """Every outcome of the last probe, once it has ended (it may have reported early)."""
        if self._completing is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._completing)
        return self.outcomes

    async def close(self) -> None:
        """Stop what runs on in the background (a probe finishing after its early report)."""
        if self._completing is not None:
            self._completing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._completing
            self._completing = None

    async def follow_events(
        self, on_event: Callable[[Event], Awaitable[None]] = _noop,
        *, max_backoff_s: float = 30.0,
    ) -> None:
        """Until cancelled: hold the events WebSocket, reconnecting with jittered backoff.

        ``probe.requested`` re-probes by itself (the cloud keeps the new report);
        every event is then handed to ``on_event`` (``media.reassigned``: the
        caller moves its media, see :meth:`MediaSession`).
        """
        backoff = 0.5
        while True:
            try:
                async for event in self.api.events():
                    backoff = 0.5
                    self.events_seen += 1
                    if event.type == "probe.requested":
                        await self.discover(force=True)
                    await on_event(event)
            except (aiohttp.ClientError, WebSocketException, OSError, TimeoutError,
                    ApiError) as exc:
                log.info("events connection lost (%s); reconnecting", exc or type(exc).__name__)
            self.reconnects += 1
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, max_backoff_s)

    async def keep_fresh(self) -> None:
        """Until cancelled: re-probe every ``interval_s`` of the probe policy."""
        while True:
            interval = self.registration.probe_policy.interval_s if self.registration else 3600
            await asyncio.sleep(interval)
            with contextlib.suppress(ApiError, OSError):
                await self.discover(force=True)

    async def join(self, meeting_id: str, request: JoinRequest | None = None) -> Joined:
        """Join; a ``428 probe_required`` answer probes and retries once, by itself.

        A ``503 node_unavailable`` answer (the node the cloud chose did not take the leg:
        its control channel was reconnecting, or it did not answer in time) is what the
        cloud's own message says to do about it: join again, after each pause of
        :data:`JOIN_RETRY_PAUSES_S`. Nothing of the meeting was written for the failed
        join (docs/design.md "Assignment"), and a node that stays silent is no longer
        healthy by the next try, so the cloud chooses another.

        When no node is left (``503 no_media_node``) because the probes saw media
        nodes' TLS re-signed, the error says so: TLS inspection, not a closed port.
        """
        probed = False
        pauses = iter(JOIN_RETRY_PAUSES_S)
        while True:
            try:
                return await self.api.join(meeting_id, request)
            except ApiError as exc:
                if exc.status == 428 and not probed:
                    probed = True
                    await self.discover(force=True)  # the cloud has no fresh report
                    continue
                pause = next(pauses, None) if exc.code == "node_unavailable" else None
                if pause is None:
                    raise self._explained(exc) from None
                log.info("join: %s; joining again in %.1f s", exc.detail, pause)
                await self.sleep(pause)

    def _explained(self, exc: ApiError) -> ApiError:
        inspected = inspected_nodes(self.outcomes)
        if exc.code != "no_media_node" or not inspected:
            return exc
        return InspectionError(inspection_message(
            inspected, "their TLS certificates are not the ones the node list publishes, so "
            "no media transport was left for this meeting"))

    async def call(self, meeting: str, options: CallOptions | None = None) -> CallReport:
        """A whole call, as ``pinhole call`` makes it: register (with
        ``options.enrollment``), discover, join (creating the meeting with
        ``options.create``), connect, talk for ``options.seconds``, leave, report.

        Raises what each step raises (:class:`~client.errors.ClientError`'s tree,
        ``aiohttp`` errors when the cloud cannot be reached).
        """
        options = options or CallOptions()
        started = time.monotonic()  # cold start: register, probe, report, join, media
        enrollment = options.enrollment
        if enrollment is not None:
            registered = await self.register(enrollment.org, enrollment.enrollment_key,
                                             enrollment.name, enrollment.device_id)
            if options.on_registered is not None:
                options.on_registered(registered)
        if self.registration is None:
            raise RuntimeError("register first, or pass CallOptions(enrollment=...)")
        registration = self.registration
        await self.discover(options.on_probe, force=options.force_probe)
        if options.on_discovered is not None:
            options.on_discovered(self.outcomes, self.source)
        if options.create:
            await self.api.create_meeting(meeting_id=meeting)
        join_sent = time.monotonic()
        joined = await self.join(meeting)
        join_ms = _ms_since(join_sent, time.monotonic())
        content = Content(self, joined, start=join_sent, share=options.share,
                          take_over=options.take_over, consent_s=options.consent_s)
        call = Call(self, joined, start=join_sent, consent_s=options.consent_s, content=content)
        totals = await call.run(options)
        first_media = call.first_media_at
        last = call.session.counters
        return CallReport(
            device_id=registration.device_id, meeting_id=joined.meeting_id,
            participant_id=joined.participant_id, joined_node=joined.node.id,
            plan=tuple(e.rung for e in joined.plan), reason=joined.reason,
            node=totals.node, transport=totals.transport,
            packets_sent=totals.packets_sent,
            bytes_sent=sum(leg.session.counters.bytes_sent for leg in call.legs),
            packets_received=totals.packets_received, drops=dict(last.drops),
            loss=totals.loss, packets_lost=totals.lost, packets_expected=totals.expected,
            jitter_ms=totals.jitter_ms, rtt_ms=totals.rtt_ms, legs=totals.legs,
            asked_reassignment=totals.asked, attempts=tuple(self.attempts),
            content=content.report(),
            timings=CallTimings(
                join_ms=join_ms,
                connect_ms=_ms_since(join_sent, call.legs[0].session.latched_at),
                first_media_ms=_ms_since(join_sent, first_media),
                first_media_from_start_ms=_ms_since(started, first_media),
                report=self.source, probe_timeout_ms=registration.probe_policy.timeout_ms,
                first_media_at=None if first_media is None
                else round(time.time() - (time.monotonic() - first_media), 3)))

    async def connect(self, joined: Joined, *, timeout_s: float = 2.0,
                      stagger_s: float = 0.2,
                      attempts: list[RungAttempt] | None = None) -> MediaSession:
        """Race the join's transport plan, Happy-Eyeballs style (RFC 8305 §5).

        The plan's rungs start in its order (the ones this device reached
        first): UDP rungs ``stagger_s / 4`` apart, consecutive stream rungs
        (TCP, TLS, the proxy) ``stagger_s / 10`` apart, the first of them
        ``stagger_s`` after the UDP rungs before them started; a rung starts
        early when every rung started so far has failed. The first
        leg to authenticate wins and every other attempt is closed. So a report
        that still says UDP after the firewall changed costs one stagger, not
        one per dead rung (a stale report: media within about 1 RTT + 300 ms).
        Each rung's outcome and time is kept in :attr:`attempts` (or ``attempts``: a
        content leg keeps its own). A rung the
        device profile forbids is a clear :class:`~wire.errors.ProfileRefused`,
        never a silent skip.
        """
        for endpoint in joined.plan:
            check_media(self.profile, Transport(endpoint.transport))
        record = self.attempts if attempts is None else attempts
        loop = asyncio.get_running_loop()
        host = joined.node.address
        winner: asyncio.Future[MediaSession] = loop.create_future()
        running: dict[asyncio.Task[None], MediaSession] = {}
        failed = asyncio.Event()
        errors: list[str] = []

        async def attempt(endpoint: Endpoint, session: MediaSession) -> None:
            started = loop.time()
            try:
                await _open(session, endpoint, host, timeout_s, self.proxy)
            except asyncio.CancelledError:
                record.append(RungAttempt(endpoint.rung, False,
                                                 (loop.time() - started) * 1000,
                                                 "abandoned: another rung authenticated first"))
                raise
            except (MediaError, OSError, TimeoutError) as exc:
                session.close()
                record.append(RungAttempt(endpoint.rung, False,
                                                 (loop.time() - started) * 1000, str(exc)))
                errors.append(f"{endpoint.rung}: {exc}")
                failed.set()
                return
            record.append(RungAttempt(endpoint.rung, True,
                                             (loop.time() - started) * 1000))
            if winner.done():
                session.close()  # a slower rung also made it: the first one wins
            else:
                winner.set_result(session)

        try:
            for wave in _waves(joined.plan, stagger_s):
                for endpoint in wave:
                    session = MediaSession(joined)
                    running[asyncio.create_task(attempt(endpoint, session))] = session
                failed.clear()
                waiter: asyncio.Future[Any] = asyncio.ensure_future(failed.wait())
                started = list(running)
                deadline = loop.time() + wave.delay_s
                while not winner.done() and not all(t.done() for t in started):
                    done, _ = await asyncio.wait({winner, waiter},
                                                 timeout=max(0.0, deadline - loop.time()),
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if not done:
                        break  # the stagger elapsed: start the next wave
                    if waiter.done():  # one failed; wait on while others still run
                        failed.clear()
                        waiter = asyncio.ensure_future(failed.wait())
                # every waiter ends here: one left pending would be destroyed at exit
                waiter.cancel()
                await asyncio.gather(waiter, return_exceptions=True)
                if winner.done():
                    break
            while not winner.done():
                pending: set[asyncio.Future[Any]] = {t for t in running if not t.done()}
                if not pending:
                    break
                await asyncio.wait({winner, *pending}, return_when=asyncio.FIRST_COMPLETED)
            if not winner.done():
                raise MediaError(f"no transport of the plan reached node {joined.node.id}: "
                                 + "; ".join(errors))
            chosen = winner.result()
        finally:
            for task, session in running.items():
                if not task.done():
                    task.cancel()
                    session.close()
        await asyncio.gather(*running, return_exceptions=True)
        if len(running) > 1:
            # A slower attempt may have authenticated after the winner and moved the node's
            # latch to its (now closed) path: one more authenticated request on the winner
            # latches it back (docs/design.md "Media leg": the latch follows the latest
            # authenticated request).
            try:
                await chosen.binding(timeout_s)
            except (MediaError, OSError, TimeoutError) as exc:
                chosen.close()
                raise MediaError(f"{chosen.rung}: the leg did not latch back: {exc}") from None
            # A loser's request still in flight on another connection may reach the node
            # after that one: latch back once more shortly, without holding up the media.
            task = asyncio.create_task(_latch_back_later(chosen, stagger_s, timeout_s))
            self._relatches.add(task)
            task.add_done_callback(self._relatches.discard)
        return chosen


async def _latch_back_later(session: MediaSession, delay_s: float, timeout_s: float) -> None:
    await asyncio.sleep(delay_s)
    with contextlib.suppress(MediaError, OSError, TimeoutError):
        await session.binding(timeout_s)  # a closed session refuses: nothing to latch


class _Wave(list[Endpoint]):
    """Rungs started together; the next wave starts ``delay_s`` later at the latest."""

    def __init__(self, endpoints: list[Endpoint], delay_s: float) -> None:
        super().__init__(endpoints)
        self.delay_s = delay_s


def _waves(plan: Sequence[Endpoint], stagger_s: float) -> list[_Wave]:
    """The plan in its order, each rung a wave: a UDP rung ``stagger_s / 4`` before the
    next UDP rung; the first of consecutive stream rungs ``stagger_s`` after the start of
    the UDP rungs before it, the others ``stagger_s / 10`` apart in plan order (so that
    TCP, a round trip shorter than TLS, wins whenever both work: the seeds' ladder; and
    the proxy, fifth in a stale plan, starts 240 ms after the join, so its media comes
    within 1 RTT + 300 ms: its CONNECT, TLS and binding take about 35 ms and a speaker's
    next packet up to 20 ms more; at ``stagger_s / 4`` apart it came 30 ms late, at
    ``stagger_s / 8`` up to 3 ms late), and the rung after them ``stagger_s`` later."""
    step = stagger_s / 4
    stream_step = stagger_s / 10
    waves: list[_Wave] = []
    udp_run = 0  # UDP waves since the last stream wave
    for endpoint in plan:
        if endpoint.transport is Transport.UDP:
            waves.append(_Wave([endpoint], step))
            udp_run += 1
        elif waves and waves[-1][0].transport is not Transport.UDP:
            # consecutive stream rungs: a short step apart; but TCP 33434 (content's second
            # rung) a whole stagger after TCP 5004: "uses port 33434 only when 5004 is
            # blocked" (FNR), so a slow TCP 5004 is not beaten by 33434 on a busy machine
            waves[-1].delay_s = (stagger_s if endpoint.rung is RungName.TCP_33434
                                 else stream_step)
            waves.append(_Wave([endpoint], stagger_s))
        else:
            if udp_run:  # the last UDP rung waits out the rest of the stagger
                waves[-1].delay_s = max(step, stagger_s - step * (udp_run - 1))
            waves.append(_Wave([endpoint], stagger_s))
            udp_run = 0
    return waves


async def _open(session: MediaSession, endpoint: Endpoint, host: str, timeout_s: float,
                proxy: ProxyConfig | None) -> None:
    address = Address(host, endpoint.port)
    if endpoint.transport is Transport.UDP:
        await session.connect_udp(address, endpoint.rung, timeout_s=timeout_s)
    elif endpoint.transport in (Transport.TCP, Transport.TLS):
        await session.connect_stream(address, endpoint.rung,
                                     tls=endpoint.transport is Transport.TLS,
                                     timeout_s=timeout_s)
    elif proxy is None:
        raise MediaError(f"{endpoint.rung} needs an HTTP proxy, and none is configured "
                         "(--proxy, HTTPS_PROXY or --pac-url)")
    else:
        try:
            reader, writer = await open_tunnel(proxy, address, timeout_s=timeout_s)
        except ProxyError as exc:
            raise MediaError(str(exc)) from None
        await session.connect_tunnel(reader, writer, endpoint.rung, timeout_s=timeout_s)


def _ms_since(start: float, at: float | None) -> float | None:
    """Milliseconds from ``start`` to ``at`` (both time.monotonic()), or None."""
    return None if at is None else round((at - start) * 1000, 2)


def _report(network: str, outcomes: list[ProbeOutcome]) -> ReachabilityReport:
    """What the cloud keeps: each rung's result, and the mapped addresses in the network
    identity."""
    mapped = sorted({str(o.mapped) for o in outcomes if o.mapped is not None})
    return ReachabilityReport(network=",".join([network, *mapped]),
                              results=[o.result() for o in outcomes])


def _outcomes_from(report: ReachabilityReport, nodes: list[NodeInfo]) -> list[ProbeOutcome]:
    """A cached report as probe outcomes, for the same table as a fresh probe."""
    by_id = {n.id: n for n in nodes}
    out = []
    for r in report.results:
        node = by_id.get(r.node_id)
        endpoint = next((e for e in node.endpoints if e.rung == r.rung), None) if node else None
        address = Address(node.address if node else "", endpoint.port if endpoint else 0)
        mapped = None
        if r.mapped:
            host, _, port = r.mapped.rpartition(":")
            mapped = Address(host.strip("[]"), int(port))
        out.append(ProbeOutcome(ProbeTarget(r.node_id, r.rung, RUNGS_BY_NAME[r.rung].transport,
                                            address),
                                r.rtt_ms, mapped, None if r.reachable else "cached: no answer"))
    return out
