"""A call as a device lives it: what it takes, the legs it runs on, what it gives.

:class:`CallOptions` in, :class:`CallReport` out: ``Device.call(meeting, options)``
registers (when the options enroll), probes or reuses the cached report, joins,
connects, talks, leaves and reports to the cloud; the :class:`CallReport` is what
``pinhole call --json`` prints, key for key (docs/architecture.md, "``pinhole --json``
shapes"). Times are milliseconds from the join request on this device's monotonic clock,
except ``first_media_at`` (Unix time, to compare with other hosts' clocks).

:class:`Call` owns the legs of one participant's call. It sends audio (and
optionally video) on the current leg; it moves to a new leg when the cloud
sends ``media.reassigned``, and when its own leg goes silent (see
:mod:`client.liveness`) it asks the cloud for one itself
(``POST …/participants/{pid}/reassign``). Its :class:`LegTotals` total
every leg and list each (node, rung, packets, times): what ``/v1/metrics/calls``
receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

from client.api import CloudApi
from client.content import Content, ContentReport
from client.errors import ApiError, MediaError
from client.liveness import LegHealth, SilencePolicy
from client.media import CONSENT_S, MediaSession
from wire.errors import StunError
from wire.leg_client import CONSENT_INTERVAL_S
from wire.models import AssignmentReason, CallLeg, CallMetrics, DeviceRegistered, Event, Joined
from wire.transports import RungName

if TYPE_CHECKING:
    from client.probe import ProbeOutcome


@dataclass(frozen=True, slots=True)
class Enrollment:
    """Who registers: the organisation, its enrollment key, the device's name (and its
    id from an earlier registration: registering it again revokes its older tokens)."""

    org: str
    enrollment_key: str
    name: str = "cli"
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class CallSecond:
    """Once a second during the call: the current leg's rung and counts, who else is here."""

    second: int
    rung: RungName | None
    packets_sent: int
    packets_received: int
    loss: float  # the worst source's, as a fraction
    others: int  # other participants in the meeting


@dataclass(frozen=True, slots=True)
class CallOptions:
    """How to call. ``enrollment`` None: the device is registered already."""

    enrollment: Enrollment | None = None
    create: bool = False  # create the meeting with this id first, unless it exists
    seconds: float = 5.0
    consent_s: float = CONSENT_INTERVAL_S  # RFC 7675 §5.1, randomized 0.8-1.2×
    mute: bool = False  # send nothing, only listen (consent checks still go out)
    video: bool = False  # also video-sized packets
    #: present: take the content floor and send synthetic screen-sharing frames on a content
    #: leg (client.content); ``take_over``: even while another participant presents
    share: bool = False
    take_over: bool = False
    force_probe: bool = False  # probe even when a cached report is young enough
    live_reports: bool = True  # an in-call quality report every 2 s (the operator's console)
    on_registered: Callable[[DeviceRegistered], None] | None = None
    on_probe: Callable[[int, int, ProbeOutcome], None] | None = None  # done, total, outcome
    on_discovered: Callable[[list[ProbeOutcome], str], None] | None = None  # outcomes, source
    on_second: Callable[[CallSecond], None] | None = None
    # set while the call talks: it stops talking at once, leaves and reports as at the end
    # of ``seconds`` (``pinhole call`` sets it on Ctrl-C, as ping prints its summary)
    hang_up: asyncio.Event | None = None


@dataclass(frozen=True, slots=True)
class RungAttempt:
    """One rung of the racing ladder: whether it authenticated, how long it took."""

    rung: RungName
    ok: bool
    ms: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CallTimings:
    join_ms: float | None
    connect_ms: float | None
    first_media_ms: float | None
    first_media_from_start_ms: float | None  # from registration: the whole cold start
    report: str  # where the reachability report came from: "probe" (fresh) or "cache"
    probe_timeout_ms: int
    first_media_at: float | None  # Unix time


@dataclass(frozen=True, slots=True)
class CallReport:
    """A whole call: the totals over every leg (a move loses what its gap lost), each
    leg in order, the ladder's attempts and the timings."""

    device_id: str
    meeting_id: str
    participant_id: str
    joined_node: str  # the join's node
    plan: tuple[RungName, ...]
    reason: AssignmentReason
    node: str  # the last leg's
    transport: RungName | None  # the last leg's rung
    packets_sent: int
    bytes_sent: int
    packets_received: int
    drops: Mapping[str, int]  # the last leg's, by reason
    loss: float  # packets_lost / packets_expected
    packets_lost: int
    packets_expected: int
    jitter_ms: float
    rtt_ms: float | None
    legs: tuple[CallLeg, ...]
    asked_reassignment: int  # moves this device asked for (its leg went silent)
    attempts: tuple[RungAttempt, ...]
    timings: CallTimings
    content: ContentReport | None = None  # screen sharing: presented, received, or neither

    @property
    def reassigned(self) -> int:
        return max(0, len(self.legs) - 1)

    def as_dict(self) -> dict[str, Any]:
        """``pinhole call --json``'s document."""
        return {
            "meeting_id": self.meeting_id, "participant_id": self.participant_id,
            "node": self.node, "plan": list(self.plan), "reason": self.reason.model_dump(),
            "transport": self.transport, "packets_sent": self.packets_sent,
            "packets_received": self.packets_received, "loss": self.loss,
            "packets_lost": self.packets_lost, "packets_expected": self.packets_expected,
            "jitter_ms": self.jitter_ms, "rtt_ms": self.rtt_ms,
            "reassigned": self.reassigned, "asked_reassignment": self.asked_reassignment,
            "legs": [leg.model_dump() for leg in self.legs],
            "joined_node": self.joined_node, "drops": dict(self.drops),
            "bytes_sent": self.bytes_sent,
            "attempts": [asdict(a) for a in self.attempts],
            "timings": asdict(self.timings),
            "content": self.content.as_dict() if self.content is not None else None,
        }

log = logging.getLogger(__name__)


class CallDevice(Protocol):
    """What a call needs of its device (:class:`client.device.Device` is one)."""

    api: CloudApi

    async def connect(self, joined: Joined) -> MediaSession: ...

    async def follow_events(self, on_event: Callable[[Event], Awaitable[None]]) -> None: ...

    async def close(self) -> None: ...


@dataclass
class LegRecord:
    session: MediaSession
    started: float
    ended: float | None = None


@dataclass(frozen=True, slots=True)
class LegTotals:
    """Every leg of the call, and the totals over them (:class:`Call.report`)."""

    joined: Joined
    legs: tuple[CallLeg, ...]
    packets_sent: int
    packets_received: int
    loss: float  # lost / expected, over the whole call: the moves' gaps count
    lost: int  # RFC 3550 §6.4.1 cumulative number of packets lost, every source
    expected: int
    jitter_ms: float
    rtt_ms: float | None
    transport: RungName | None
    asked: int  # reassignments this device asked for (its leg went silent)

    @property
    def node(self) -> str:
        return self.legs[-1].node if self.legs else self.joined.node.id

    def metrics(self, duration_s: float) -> CallMetrics:
        return CallMetrics.model_validate({
            "meeting_id": self.joined.meeting_id, "participant_id": self.joined.participant_id,
            "transport": self.transport, "duration_s": duration_s,
            "packets_sent": self.packets_sent, "packets_received": self.packets_received,
            "loss": min(1.0, max(0.0, self.loss)), "jitter_ms": self.jitter_ms,
            "rtt_ms": self.rtt_ms, "legs": [leg.model_dump() for leg in self.legs]})

    def as_dict(self) -> dict[str, Any]:
        return {"node": self.node, "transport": self.transport,
                "packets_sent": self.packets_sent, "packets_received": self.packets_received,
                "loss": self.loss, "packets_lost": self.lost,
                "packets_expected": self.expected,
                "jitter_ms": self.jitter_ms, "rtt_ms": self.rtt_ms,
                "reassigned": max(0, len(self.legs) - 1), "asked_reassignment": self.asked,
                "legs": [leg.model_dump() for leg in self.legs]}


def _ms(start: float, at: float | None) -> float | None:
    return None if at is None else round(max(0.0, at - start) * 1000, 2)


@dataclass
class Call:
    """One participant's call from join to leave; ``start`` is the join request's time."""

    device: CallDevice
    joined: Joined
    start: float
    consent_s: float = CONSENT_S  # RFC 7675 §5.1 randomization around it
    silence: SilencePolicy = field(default_factory=SilencePolicy)
    clock: Callable[[], float] = time.monotonic
    on_other_event: Callable[[Event], None] | None = None  # every event, for the caller
    content: Content | None = None  # screen sharing: presenting or receiving
    legs: list[LegRecord] = field(default_factory=list)
    asked: int = 0
    _target: Joined | None = None  # the latest assignment, connected or not
    _seen: set[str] = field(default_factory=set)  # assignments (node ufrags) acted on
    _moving: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def session(self) -> MediaSession:
        return self.legs[-1].session

    async def connect(self) -> MediaSession:
        """The first leg."""
        self._target = self.joined
        self._seen.add(self.joined.ice.node_ufrag)
        session = await self.device.connect(self.joined)
        self._add(session)
        return session

    def _add(self, session: MediaSession) -> None:
        session.start_keepalives(self.consent_s)
        now = self.clock()
        if self.legs:
            session.continue_from(self.legs[-1].session)  # loss counted across the move
            self.legs[-1].ended = now
            self.legs[-1].session.close()
        self.legs.append(LegRecord(session, session.latched_at or now))

    async def move(self, assignment: Joined) -> None:
        """Connect to ``assignment`` (once, however many times it is announced)."""
        async with self._moving:
            if assignment.ice.node_ufrag in self._seen:
                return
            self._seen.add(assignment.ice.node_ufrag)
            self._target = assignment
            try:
                session = await self.device.connect(assignment)
            except (MediaError, OSError, TimeoutError) as exc:
                log.warning("could not reach the new node %s: %s", assignment.node.id, exc)
                return  # the silence watch asks again, away from that node
            self._add(session)
            log.info("media moved to node %s over %s", assignment.node.id, session.rung)

    async def on_event(self, event: Event) -> None:
        """``media.reassigned`` for this participant: move the media."""
        if self.on_other_event is not None:
            self.on_other_event(event)
        if self.content is not None:
            await self.content.on_event(event)
        if (event.type == "media.reassigned" and event.assignment is not None
                and event.participant_id == self.joined.participant_id):
            await self.move(event.assignment)

    async def watch(self, every_s: float = 0.1) -> None:
        """Until cancelled: check a quiet leg's consent; ask for a new node when it is silent."""
        checking: asyncio.Task[float] | None = None
        asked_for: str | None = None  # the node ufrag of the assignment already asked about
        retry_at = 0.0
        while True:
            await asyncio.sleep(every_s)
            if self._moving.locked():
                continue
            leg = self.legs[-1]
            now = self.clock()
            heard = leg.session.heard_at or leg.started
            target = self._target or self.joined
            connected = target.ice.node_ufrag == leg.session.joined.ice.node_ufrag
            health = self.silence.judge(heard, now) if connected else LegHealth.SILENT
            if health is LegHealth.CHECK and (checking is None or checking.done()):
                checking = asyncio.create_task(leg.session.binding(self.silence.check_after_s))
                checking.add_done_callback(_quiet)
            if health is not LegHealth.SILENT:
                continue
            if asked_for == target.ice.node_ufrag or now < retry_at:
                continue
            asked_for = target.ice.node_ufrag
            log.warning("leg to node %s is silent; asking for another node", target.node.id)
            try:
                moved = await self.device.api.reassign(self.joined.meeting_id,
                                                       self.joined.participant_id,
                                                       target.node.id)
            except ApiError as exc:
                if exc.status != 409:  # 409: already moved; the event carries it
                    asked_for, retry_at = None, now + 1.0
                log.info("reassignment refused: %s", exc)
                continue
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.info("cannot reach the cloud to ask for reassignment: %s", exc)
                asked_for, retry_at = None, now + 1.0
                continue
            self.asked += 1
            await self.move(moved)

    async def talk(self, seconds: float, *, video: bool = False, mute: bool = False,
                   every_second: Callable[[int, MediaSession], None] | None = None,
                   hang_up: asyncio.Event | None = None) -> float:
        """Send 20 ms audio packets (and video slices) on the current leg for ``seconds``,
        or until ``hang_up`` is set; ``mute``: send nothing, only listen (consent checks
        still go out); ``every_second`` is called once a second with the current leg.
        Returns the seconds it talked."""
        follower = asyncio.create_task(self.device.follow_events(self.on_event))
        watcher = asyncio.create_task(self.watch())
        began = self.clock()
        i = 0
        try:
            while (due := began + i * 0.02) < began + seconds and not (
                    hang_up is not None and hang_up.is_set()):
                session = self.session
                if not mute:
                    with contextlib.suppress(MediaError, OSError):
                        session.send_audio(i.to_bytes(4, "big") + bytes(156))
                        if video and i % 2 == 0:
                            session.send_video()
                if every_second is not None and i % 50 == 0:
                    every_second(i // 50, session)
                i += 1
                await asyncio.sleep(max(0.0, due + 0.02 - self.clock()))
            await asyncio.sleep(0.3)  # the others' last packets
        finally:
            for task in (follower, watcher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return min(seconds, i * 0.02)

    async def run(self, options: CallOptions) -> LegTotals:
        """The whole call from here: the first leg, ``options.seconds`` of media (a
        :class:`CallSecond` to ``options.on_second`` each second, an
        in-call quality report to the cloud every 2 s), the leave and the end-of-call
        report (``/v1/metrics/calls``); the totals."""
        api = self.device.api
        me = self.joined.participant_id
        others = {p.id for p in (await api.meeting(self.joined.meeting_id)).participants
                  if p.id != me}
        outer = self.on_other_event

        def count_others(event: Event) -> None:
            if event.meeting_id == self.joined.meeting_id and event.participant_id and \
                    event.participant_id != me:
                if event.type == "participant.joined":
                    others.add(event.participant_id)
                elif event.type == "participant.left":
                    others.discard(event.participant_id)
            if outer is not None:
                outer(event)

        self.on_other_event = count_others
        reports: set[asyncio.Task[None]] = set()

        def every_second(second: int, session: MediaSession) -> None:
            if options.on_second is not None:
                c = session.counters
                options.on_second(CallSecond(
                    second, session.rung, c.packets_sent, c.packets_received,
                    max((st.loss for st in session.sources.values()), default=0.0),
                    len(others)))
            if options.live_reports and second % 2 == 1:
                task = asyncio.create_task(_live_report(api, self.joined, session, second))
                reports.add(task)
                task.add_done_callback(reports.discard)

        await self.connect()
        talked = 0.0
        sharing: asyncio.Task[None] | None = None
        try:
            if self.content is not None:
                await self.content.begin()
                sharing = asyncio.create_task(self.content.run(options.hang_up))
            talked = await self.talk(options.seconds, video=options.video, mute=options.mute,
                                     every_second=every_second, hang_up=options.hang_up)
        finally:
            for task in [*reports, *([sharing] if sharing is not None else [])]:
                task.cancel()
            await asyncio.gather(*reports, *([sharing] if sharing else []),
                                 return_exceptions=True)
            self.close()
        await api.leave(self.joined.meeting_id, me)
        totals = self.report()
        first_media = self.first_media_at
        await api.report_call(totals.metrics(talked).model_copy(update={  # every leg
            "time_to_media_ms": _ms(self.start, first_media)}))  # the seed's analytics
        return totals

    @property
    def first_media_at(self) -> float | None:
        """When the first leg that heard media heard it (the clock's time), or None."""
        return next((leg.session.first_media_at for leg in self.legs
                     if leg.session.first_media_at is not None), None)

    def close(self) -> None:
        if self.content is not None:
            self.content.close()
        if self.legs and self.legs[-1].ended is None:
            self.legs[-1].ended = self.clock()
        for leg in self.legs:
            leg.session.close()

    def report(self) -> LegTotals:
        legs: list[CallLeg] = []
        for leg in self.legs:
            s = leg.session
            c = s.counters
            legs.append(CallLeg.model_validate({
                "node": s.joined.node.id, "rung": s.rung,
                "packets_sent": c.packets_sent, "packets_received": c.packets_received,
                "started_ms": _ms(self.start, leg.started),
                "ended_ms": _ms(self.start, leg.ended or self.clock()),
                "first_media_ms": _ms(self.start, s.first_media_at),
                "last_media_ms": _ms(self.start, s.last_media_at)}))
        last = self.legs[-1].session if self.legs else None
        # the last leg's statistics carry every earlier leg's (MediaSession.continue_from)
        sources = list(last.sources.values()) if last else []
        expected = sum(stats.expected for stats in sources)
        lost = sum(stats.lost for stats in sources)
        jitter = max((stats.jitter_ms for stats in sources), default=0.0)
        return LegTotals(
            joined=self.joined, legs=tuple(legs),
            packets_sent=sum(leg.packets_sent for leg in legs),
            packets_received=sum(leg.packets_received for leg in legs),
            loss=lost / expected if expected else 0.0, lost=lost, expected=expected,
            jitter_ms=jitter,
            rtt_ms=last.counters.keepalive_rtt_ms if last else None,
            transport=last.rung if last else None, asked=self.asked)


async def _live_report(api: CloudApi, joined: Joined, session: MediaSession,
                       seconds: float) -> None:
    """An in-call quality report (``final: false``); a lost one is simply not shown."""
    c = session.counters
    with contextlib.suppress(ApiError, aiohttp.ClientError, OSError, TimeoutError, ValueError):
        await api.report_call(CallMetrics.model_validate({
            "meeting_id": joined.meeting_id, "participant_id": joined.participant_id,
            "transport": session.rung, "duration_s": seconds, "final": False,
            "packets_sent": c.packets_sent, "packets_received": c.packets_received,
            "loss": min(1.0, max(0.0, max((s.loss for s in session.sources.values()),
                                          default=0.0))),
            "jitter_ms": max((s.jitter_ms for s in session.sources.values()), default=0.0),
            "rtt_ms": c.keepalive_rtt_ms}))


def _quiet(task: asyncio.Task[float]) -> None:
    """A consent check's outcome is read from ``heard_at``; its errors are expected."""
    if not task.cancelled():
        exc = task.exception()
        if exc is not None and not isinstance(exc, TimeoutError | MediaError | StunError):
            log.warning("consent check failed: %s", exc)
