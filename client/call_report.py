"""What a whole call takes and gives: :class:`CallOptions` in, :class:`CallReport` out.

``Device.call(meeting, options)`` registers (when the options enroll), probes
or reuses the cached report, joins, connects, talks, leaves and reports to the
cloud; the :class:`CallReport` is what ``pinhole call --json`` prints, key for
key (docs/architecture.md, "``pinhole --json`` shapes"). Times are
milliseconds from the join request on this device's monotonic clock, except
``first_media_at`` (Unix time, to compare with other hosts' clocks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from wire.leg_client import CONSENT_INTERVAL_S
from wire.models import AssignmentReason, CallLeg, DeviceRegistered

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
    rung: str | None
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
    force_probe: bool = False  # probe even when a cached report is young enough
    live_reports: bool = True  # an in-call quality report every 2 s (the operator's console)
    on_registered: Callable[[DeviceRegistered], None] | None = None
    on_probe: Callable[[int, int, ProbeOutcome], None] | None = None  # done, total, outcome
    on_discovered: Callable[[list[ProbeOutcome], str], None] | None = None  # outcomes, source
    on_second: Callable[[CallSecond], None] | None = None


@dataclass(frozen=True, slots=True)
class RungAttempt:
    """One rung of the racing ladder: whether it authenticated, how long it took."""

    rung: str
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
    plan: tuple[str, ...]
    reason: AssignmentReason
    node: str  # the last leg's
    transport: str | None  # the last leg's rung
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
        }
