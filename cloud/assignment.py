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
from enum import StrEnum
from typing import Final

from cloud.errors import NoCandidate, PrivateMeetingUnreachable
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
#: A device at least this far (STUN RTT) from its cluster is placed on the cloud, unless the
#: cluster's nodes registered another threshold.
OVERFLOW_RTT_MS: Final = 250.0

class Rule(StrEnum):
    """Why a node was chosen (``AssignmentReason.rule``); ``/metrics`` counts placements by
    it (docs/design.md "Assignment")."""

    HYBRID_LOCAL = "hybrid-local"
    INTRA_CLUSTER = "intra-cluster"
    HYBRID_OVERFLOW = "hybrid-overflow"  # overflow by capacity: the whole cluster is full
    OVERFLOW_DELAY = "overflow-delay"
    GUEST = "guest"
    PRIVATE_REFUSED = "private-refused"  # no node: a private meeting's refusal
    LOWEST_SCORE = "lowest-score"
    MEETING_NODE = "meeting-node"
    LOWEST_LOAD = "lowest-load"
    NONE = "none"  # no node at all


@dataclass(frozen=True, slots=True)
class Scope:
    """What the meeting asks of a placement beyond the device's reach.

    ``meeting_org``: the meeting's organisation (None: the device's own); a device of
    another org is a guest. ``private``: all media on the meeting org's clusters.
    ``guests_on_clusters``: guests may use the meeting org's clusters (default: the cloud).
    """

    meeting_org: str | None = None
    private: bool = False
    guests_on_clusters: bool = False


OWN_MEETING: Final = Scope()


def cluster_of(node: NodeInfo) -> str:
    """A hybrid node's cluster; one registered without a cluster is a cluster of its own."""
    return node.cluster or node.id


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


def _cluster_rtts(hybrids: Sequence[NodeInfo], results: Sequence[ProbeResult],
                  profile: DeviceProfile) -> dict[str, float]:
    """Per cluster: the device's lowest measured RTT to any of its nodes (unreached: absent)."""
    rtts: dict[str, float] = {}
    for node in hybrids:
        best = _best_rung(node, results, profile)
        if best is not None:
            rtt = best[1] - RUNGS_BY_NAME[best[0]].penalty_ms
            key = cluster_of(node)
            rtts[key] = min(rtt, rtts.get(key, rtt))
    return rtts


def _cluster_thresholds(hybrids: Sequence[NodeInfo]) -> dict[str, float]:
    """Per cluster: its overflow-by-delay threshold, the lowest any of its nodes registered."""
    out: dict[str, float] = {}
    for node in hybrids:
        own = node.overflow_rtt_ms if node.overflow_rtt_ms is not None else OVERFLOW_RTT_MS
        out[cluster_of(node)] = min(own, out.get(cluster_of(node), own))
    return out


def _on_cluster(eligible: Sequence[tuple[float, NodeInfo]], listed: Sequence[NodeInfo],
                meeting_nodes: frozenset[str], rtts: dict[str, float]
                ) -> tuple[NodeInfo, str]:
    """The node of the org's clusters for this device, and the rule that chose it.

    The cluster: one that already carries the meeting, else the nearest. In it, a node
    that carries the meeting (``hybrid-local``); when the meeting's nodes there cannot
    take more, another node of the same cluster (``intra-cluster``: the two are joined
    inside the premises); a meeting not yet in the cluster starts on its best node."""
    carrying = {cluster_of(n) for n in listed if n.kind == "hybrid" and n.id in meeting_nodes}
    clusters = sorted({cluster_of(n) for _, n in eligible},
                      key=lambda c: (c not in carrying, rtts.get(c, 0.0), c))
    cluster = clusters[0]
    mine = [(s, n) for s, n in eligible if cluster_of(n) == cluster]
    in_meeting = [(s, n) for s, n in mine if n.id in meeting_nodes]
    rule = Rule.HYBRID_LOCAL if in_meeting or cluster not in carrying else Rule.INTRA_CLUSTER
    _, chosen = min(in_meeting or mine, key=lambda pair: (pair[0], pair[1].id))
    return chosen, rule


def _scope_exclusion(node: NodeInfo, scope: Scope, guest: bool) -> str | None:
    if scope.private and node.kind == "cloud":
        return "private meeting: media stays on the org's clusters"
    if guest and not scope.private and not scope.guests_on_clusters and node.kind == "hybrid":
        return "a guest of another org: placed on the cloud"
    return None


def assign(
    *,
    org: str,
    profile: DeviceProfile,
    nodes: Iterable[NodeInfo],
    results: Sequence[ProbeResult],
    meeting_nodes: frozenset[str],
    scope: Scope = OWN_MEETING,
    exclude: frozenset[str] = frozenset(),
) -> Assignment:
    """Choose a node for a device of ``org`` with ``profile`` given its probe ``results``.

    Candidates are healthy, non-full nodes visible to the meeting's org that the device
    reached on a rung its profile allows. A node of the org's clusters wins when it is a
    candidate (seed: "If all the meeting participants are located on the same network,
    media is not sent to Cisco Collaboration Cloud"): the node of the cluster that carries
    the meeting (rule ``hybrid-local``) or, when that node is full, another node of the
    same cluster (``intra-cluster``). "Cloud overflow happens only when the whole cluster
    is full or unreachable": reached but full, the join goes to the cloud
    (``hybrid-overflow``). "A device whose STUN round-trip to its cluster is ≥ 250 ms is
    placed on the cloud", the threshold the cluster's nodes registered
    (``overflow-delay``). A guest of another org goes to the cloud (``guest``) unless
    ``scope.guests_on_clusters``. Otherwise the lowest ``rtt + transport penalty + cascade
    cost + load cost`` wins (``lowest-score``).

    A private meeting "keeps all media on the org's clusters: never a cascade to the
    cloud": cloud nodes are no candidates, the delay threshold does not apply, and a
    device that reached no node of them with room raises
    :class:`PrivateMeetingUnreachable` (rule ``private-refused``). Otherwise raises
    :class:`NoCandidate` with every node's exclusion when none qualifies.

    A node in ``exclude`` (the one a participant is moving away from) is no candidate,
    but still counts as one of the meeting's nodes: when it was the meeting's node of a
    cluster, the move to another node of that cluster is ``intra-cluster``.
    """
    home = scope.meeting_org or org
    guest = home != org
    scores: list[CandidateScore] = []
    eligible: list[tuple[float, NodeInfo]] = []
    # another org's on-prem node is never even listed
    listed = [n for n in sorted(nodes, key=lambda n: n.id)
              if n.kind == "cloud" or n.org == home]
    hybrids = [n for n in listed if n.kind == "hybrid"]
    rtts = _cluster_rtts(hybrids, results, profile)
    thresholds = _cluster_thresholds(hybrids)
    full_clusters: set[str] = set()
    far_clusters: set[str] = set()
    for node in listed:
        excluded: str | None = None
        best = _best_rung(node, results, profile)
        cluster = cluster_of(node) if node.kind == "hybrid" else None
        scoped = _scope_exclusion(node, scope, guest)
        if node.id in exclude:
            excluded = "the node this participant moves away from"
        elif not node.healthy:
            excluded = "unhealthy"
        elif best is None:
            excluded = "not reached on a transport this profile allows"
        elif scoped is not None:
            excluded = scoped
        elif (cluster is not None and not scope.private
              and rtts[cluster] >= thresholds[cluster]):
            excluded = (f"overflow by delay: {rtts[cluster]:g} ms to cluster {cluster}, "
                        f"at least its {thresholds[cluster]:g} ms")
            far_clusters.add(cluster)
        elif node.load >= 1.0:
            excluded = "full"
            if cluster is not None:
                full_clusters.add(cluster)
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
    hybrid = [(s, n) for s, n in eligible if n.kind == "hybrid"]
    if scope.private and not hybrid:
        refused = AssignmentReason(chosen="none", rule=Rule.PRIVATE_REFUSED, candidates=scores)
        raise PrivateMeetingUnreachable(
            refused, "this meeting is private: its media stays on the org's clusters, and "
            + ("every node of them this device reached is full; try again when a "
               "participant leaves" if full_clusters else
               f"this device, of another organisation ({org}), reaches no node of them: "
               "a private meeting takes no guests from outside its network" if guest else
               "this device reached no node of them; join from the organisation's network "
               "(or its VPN), probe again, then join"))
    if not eligible:
        reason = (AssignmentReason(chosen="none", rule=Rule.NONE, candidates=scores)
                  if scores else None)
        raise NoCandidate(
            reason,
            "no media node is reachable on a transport this device may use; "
            "probe again, or open UDP 5004 outbound",
        )
    if hybrid:
        chosen, rule = _on_cluster(hybrid, listed, meeting_nodes, rtts)
    else:
        rule = (Rule.GUEST if guest and not scope.guests_on_clusters
                else Rule.HYBRID_OVERFLOW if full_clusters
                else Rule.OVERFLOW_DELAY if far_clusters else Rule.LOWEST_SCORE)
        _, chosen = min(eligible, key=lambda pair: (pair[0], pair[1].id))
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
    scope: Scope = OWN_MEETING,
) -> Assignment:
    """Choose a node for a WebRTC endpoint, which sends no discovery probes.

    A page cannot send raw STUN, so there is no RTT to compare: its ICE agent
    measures the paths once it has the answer (RFC 8445 §6.1.4). Candidates are
    healthy, non-full nodes visible to the meeting's org with a DTLS certificate. A node
    of the org's clusters wins (rule ``hybrid-local``, or ``intra-cluster`` when the
    meeting's node there is full, as for every device: seed, "If all the meeting
    participants are located on the same network, media is not sent to Cisco
    Collaboration Cloud"); then a node the meeting already uses (rule
    ``meeting-node``: no cascade hop); then the least loaded (``lowest-load``). A guest
    goes to the cloud (``guest``) and a private meeting never does, as in :func:`assign`
    (no RTT: no overflow by delay). Every candidate's score is its cascade and load cost;
    ``rtt_ms`` stays empty: nothing was measured. Raises :class:`NoCandidate` (or
    :class:`PrivateMeetingUnreachable`) when none qualifies.
    """
    home = scope.meeting_org or org
    guest = home != org
    scores: list[CandidateScore] = []
    eligible: list[tuple[float, NodeInfo]] = []
    listed = [n for n in sorted(nodes, key=lambda n: n.id)
              if n.kind == "cloud" or n.org == home]
    for node in listed:
        excluded: str | None = None
        scoped = _scope_exclusion(node, scope, guest)
        if not node.healthy:
            excluded = "unhealthy"
        elif node.dtls_fingerprint is None:
            excluded = "no DTLS certificate"
        elif scoped is not None:
            excluded = scoped
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
    hybrid = [(s, n) for s, n in eligible if n.kind == "hybrid"]
    if scope.private and not hybrid:
        raise PrivateMeetingUnreachable(
            AssignmentReason(chosen="none", rule=Rule.PRIVATE_REFUSED, candidates=scores),
            "this meeting is private: its media stays on the org's clusters, and none of "
            "their nodes can take a WebRTC endpoint now; try again shortly")
    if not eligible:
        raise NoCandidate(
            AssignmentReason(chosen="none", rule=Rule.NONE, candidates=scores) if scores else None,
            "no media node can take a WebRTC endpoint now; try again shortly")
    if hybrid:
        chosen, rule = _on_cluster(hybrid, listed, meeting_nodes, {})
        return Assignment(node=chosen, plan=(), reason=AssignmentReason(
            chosen=chosen.id, rule=rule, candidates=scores))
    in_meeting = [(s, n) for s, n in eligible if n.id in meeting_nodes]
    rule = Rule.GUEST if guest and not scope.guests_on_clusters else (
        Rule.MEETING_NODE if in_meeting else Rule.LOWEST_LOAD)
    _, chosen = min(in_meeting or eligible, key=lambda pair: (pair[0], pair[1].id))
    return Assignment(node=chosen, plan=(), reason=AssignmentReason(
        chosen=chosen.id, rule=rule, candidates=scores))
