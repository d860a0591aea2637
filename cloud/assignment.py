"""Assignment of a media node to a joining device: a pure function, no I/O.

Seed: "When a meeting starts, Cisco Collaboration Cloud assigns a media node
to the Cisco Spark app or endpoint. The assignment is based on information
from a previously completed media node discovery probe. ... The node
assignment might not rely just on the RTT measurements, but also on where the
other participants in the meeting are joining from."
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from cloud.errors import NoCandidate
from wire.models import AssignmentReason, CandidateScore, Endpoint, NodeInfo, ProbeResult
from wire.transports import (
    PROFILES,
    RUNGS_BY_NAME,
    DeviceProfile,
    RungName,
    Transport,
    allowed_rungs,
)

#: Charged for a node not yet in the meeting: joining it means a cascade hop.
CASCADE_COST_MS: Final = 30.0
#: Charged per unit of load (0 = idle, 1 = full).
LOAD_COST_MS: Final = 50.0


@dataclass(frozen=True, slots=True)
class Assignment:
    node: NodeInfo
    plan: tuple[Endpoint, ...]
    reason: AssignmentReason


def _best_rung(
    node: NodeInfo, results: Sequence[ProbeResult], profile: DeviceProfile
) -> tuple[RungName, float] | None:
    """The allowed, reached rung with the lowest ``rtt + penalty``, and that score."""
    allowed = {r.name for r in allowed_rungs(profile, legacy_dc=node.legacy_dc)}
    best: tuple[RungName, float] | None = None
    for result in results:
        if result.node_id != node.id or not result.reachable or result.rtt_ms is None:
            continue
        if result.rung not in allowed:
            continue
        score = result.rtt_ms + RUNGS_BY_NAME[result.rung].penalty_ms
        if best is None or score < best[1]:
            best = (result.rung, score)
    return best


def transport_plan(
    node: NodeInfo, results: Sequence[ProbeResult], profile: DeviceProfile
) -> tuple[Endpoint, ...]:
    """The node's endpoints the profile allows, rungs this device reached first, each
    group in ladder order; ``http-proxy`` rides on ``tls/443`` when the profile allows it."""
    by_rung = {e.rung: e for e in node.endpoints}
    tls = by_rung.get(RungName.TLS_443)
    if tls is not None and Transport.HTTP_PROXY in PROFILES[profile].media:
        by_rung[RungName.HTTP_PROXY] = Endpoint(rung=RungName.HTTP_PROXY,
                                                transport=Transport.HTTP_PROXY, port=tls.port)
    reached = {r.rung for r in results if r.node_id == node.id and r.reachable}
    ladder = [r.name for r in allowed_rungs(profile, legacy_dc=node.legacy_dc)]
    ordered = [n for n in ladder if n in by_rung and n in reached]
    ordered += [n for n in ladder if n in by_rung and n not in reached]
    return tuple(by_rung[n] for n in ordered)


def assign(
    *,
    org: str,
    profile: DeviceProfile,
    nodes: Iterable[NodeInfo],
    results: Sequence[ProbeResult],
    meeting_nodes: frozenset[str],
) -> Assignment:
    """Choose a node for a device of ``org`` with ``profile`` given its probe ``results``.

    Candidates are healthy, non-full nodes visible to ``org`` that the device
    reached on a rung its profile allows.  The org's hybrid node wins when it
    is a candidate (rule ``hybrid-local``; seed: "If all the meeting
    participants are located on the same network, media is not sent to Cisco
    Collaboration Cloud"); one the device reached but that is full sends the
    join to the cloud (rule ``hybrid-overflow``); otherwise the lowest
    ``rtt + transport penalty + cascade cost + load cost`` wins.  Raises
    :class:`NoCandidate` with every node's exclusion when none qualifies.
    """
    scores: list[CandidateScore] = []
    eligible: list[tuple[float, NodeInfo]] = []
    listed = sorted(nodes, key=lambda n: n.id)
    hybrid_ids = {n.id for n in listed if n.kind == "hybrid" and n.org == org}
    for node in listed:
        excluded: str | None = None
        if node.kind == "hybrid" and node.org != org:
            continue  # not visible: another org's on-prem node is never even listed
        best = _best_rung(node, results, profile)
        if not node.healthy:
            excluded = "unhealthy"
        elif best is None:
            excluded = "not reached on a transport this profile allows"
        elif node.load >= 1.0:
            excluded = "full"
        cascade = 0.0 if not meeting_nodes or node.id in meeting_nodes else CASCADE_COST_MS
        load = node.load * LOAD_COST_MS
        rtt = None
        rung: RungName | None = None
        penalty = 0.0
        total = None
        if best is not None:
            rung = best[0]
            penalty = RUNGS_BY_NAME[rung].penalty_ms
            rtt = best[1] - penalty
            total = best[1] + cascade + load
        scores.append(
            CandidateScore(
                node_id=node.id, rung=rung, rtt_ms=rtt, transport_penalty_ms=penalty,
                cascade_ms=cascade, load_ms=load, score=total, excluded=excluded,
            )
        )
        if excluded is None and total is not None:
            eligible.append((total, node))
    if not eligible:
        reason = AssignmentReason(chosen="none", rule="none", candidates=scores) if scores else None
        raise NoCandidate(
            reason,
            "no media node is reachable on a transport this device may use; "
            "probe again, or open UDP 5004 outbound",
        )
    hybrid = [(s, n) for s, n in eligible if n.kind == "hybrid" and n.org == org]
    # the org's hybrid node reached but full: this join overflows to the cloud, and says so
    overflow = not hybrid and any(
        c.excluded == "full" and c.node_id in hybrid_ids for c in scores)
    rule = "hybrid-local" if hybrid else "hybrid-overflow" if overflow else "lowest-score"
    _, chosen = min(hybrid or eligible, key=lambda pair: (pair[0], pair[1].id))
    return Assignment(
        node=chosen,
        plan=transport_plan(chosen, results, profile),
        reason=AssignmentReason(chosen=chosen.id, rule=rule, candidates=scores),
    )


def assign_webrtc(
    *,
    org: str,
    nodes: Iterable[NodeInfo],
    meeting_nodes: frozenset[str],
) -> Assignment:
    """Choose a node for a WebRTC endpoint, which sends no discovery probes.

    A page cannot send raw STUN, so there is no RTT to compare: its ICE agent
    measures the paths once it has the answer (RFC 8445 §6.1.4). Candidates are
    healthy, non-full nodes visible to ``org`` with a DTLS certificate. The org's
    hybrid node wins (rule ``hybrid-local``, as for every device: seed, "If all
    the meeting participants are located on the same network, media is not sent
    to Cisco Collaboration Cloud"); then a node the meeting already uses (rule
    ``meeting-node``: no cascade hop); then the least loaded (``lowest-load``).
    Every candidate's score is its cascade and load cost; ``rtt_ms`` stays empty:
    nothing was measured. Raises :class:`NoCandidate` when none qualifies.
    """
    scores: list[CandidateScore] = []
    eligible: list[tuple[float, NodeInfo]] = []
    for node in sorted(nodes, key=lambda n: n.id):
        if node.kind == "hybrid" and node.org != org:
            continue
        excluded: str | None = None
        if not node.healthy:
            excluded = "unhealthy"
        elif node.dtls_fingerprint is None:
            excluded = "no DTLS certificate"
        elif node.load >= 1.0:
            excluded = "full"
        cascade = 0.0 if not meeting_nodes or node.id in meeting_nodes else CASCADE_COST_MS
        load = node.load * LOAD_COST_MS
        total = cascade + load
        scores.append(CandidateScore(
            node_id=node.id, rung=None, rtt_ms=None, transport_penalty_ms=0.0,
            cascade_ms=cascade, load_ms=load, score=None if excluded else total,
            excluded=excluded))
        if excluded is None:
            eligible.append((total, node))
    if not eligible:
        raise NoCandidate(
            AssignmentReason(chosen="none", rule="none", candidates=scores) if scores else None,
            "no media node can take a WebRTC endpoint now; try again shortly")
    hybrid = [(s, n) for s, n in eligible if n.kind == "hybrid" and n.org == org]
    in_meeting = [(s, n) for s, n in eligible if n.id in meeting_nodes]
    rule = "hybrid-local" if hybrid else "meeting-node" if in_meeting else "lowest-load"
    _, chosen = min(hybrid or in_meeting or eligible, key=lambda pair: (pair[0], pair[1].id))
    return Assignment(node=chosen, plan=(), reason=AssignmentReason(
        chosen=chosen.id, rule=rule, candidates=scores))
