"""Placing a participant: assignment, fresh credentials, the leg on the node, cascades.

Used by join and by reassignment when a node fails. The caller holds the
meeting's lock and stores the meeting it gets back. A participant that cannot
be placed is :class:`~cloud.errors.NoCandidate` or
:class:`~cloud.errors.NodeUnavailable`; the caller decides what that means.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import replace

from pydantic import SecretStr

from cloud.assignment import Assignment, Rule, Scope, assign, cluster_of
from cloud.cascades import open_cascades
from cloud.errors import NodeUnavailable, PrivateMeetingUnreachable
from cloud.state import Cloud
from cloud.store import MeetingRecord, ParticipantRecord
from wire.models import (
    AllocateLeg,
    IceCredentials,
    Joined,
    NodeInfo,
    ProbeResult,
    SrtpParams,
)
from wire.srtp import SrtpKeys, SrtpProfile
from wire.transports import DeviceProfile


def scope_of(cloud: Cloud, meeting: MeetingRecord) -> Scope:
    """What ``meeting`` asks of every placement in it (its org, private, guests)."""
    return Scope(meeting_org=meeting.org, private=meeting.private,
                 guests_on_clusters=cloud.settings.guests_on_clusters)


def _note_overflow(cloud: Cloud, meeting: MeetingRecord, chosen: Assignment,
                   nodes: Sequence[NodeInfo], participant: ParticipantRecord) -> None:
    """The console's history: why this participant left its cluster, or took another node
    of it."""
    rule = chosen.reason.rule
    if rule not in (Rule.HYBRID_OVERFLOW, Rule.OVERFLOW_DELAY, Rule.INTRA_CLUSTER):
        return
    hybrid = {n.id for n in nodes if n.kind == "hybrid" and (
        rule != Rule.INTRA_CLUSTER or cluster_of(n) == cluster_of(chosen.node))}
    left = [c.node_id for c in chosen.reason.candidates if c.node_id in hybrid and (
        c.excluded == "full" or (c.excluded or "").startswith("overflow by delay"))]
    names = " and ".join(left) or "its cluster"
    to = chosen.node.id
    text = {
        Rule.HYBRID_OVERFLOW: f"{names} full: {participant.id} overflows to {to}",
        Rule.OVERFLOW_DELAY: f"{participant.id} too far from {names}: overflows to {to}",
        Rule.INTRA_CLUSTER: f"{participant.id} on {to}, another node of the meeting's "
                            "cluster" + (f" ({names} full)" if left else ""),
    }[Rule(rule)]
    cloud.history.note("overflow", text, meeting=meeting.id, participant=participant.id,
                       device=participant.device_id, node=left[0] if left else None,
                       to_node=chosen.node.id)


def unique_ssrc(meeting: MeetingRecord) -> int:
    """SSRCs are unique per meeting (docs/design.md "SRTP")."""
    taken = {p.ssrc for p in meeting.participants}
    while True:
        ssrc = secrets.randbits(32)
        if ssrc and ssrc not in taken:
            return ssrc


async def seat(
    cloud: Cloud,
    meeting: MeetingRecord,
    *,
    others: tuple[ParticipantRecord, ...],
    chosen: Assignment,
    nodes: Sequence[NodeInfo],
    participant: ParticipantRecord,
    command: AllocateLeg,
) -> MeetingRecord:
    """Allocate ``participant``'s leg on the chosen node and cascade it into the meeting
    of ``others``: the meeting as it is with the participant in it."""
    try:
        await cloud.registry.allocate(chosen.node.id, command, cloud.settings.allocate_timeout_s)
    except NodeUnavailable as exc:
        raise NodeUnavailable(f"{exc}; try joining again") from None
    cloud.metrics.placements.labels(chosen.reason.rule).inc()
    _note_overflow(cloud, meeting, chosen, nodes, participant)
    meeting = replace(meeting, participants=others)
    if others and chosen.node.id not in {p.node_id for p in others}:
        meeting = await open_cascades(cloud, meeting, chosen.node.id)
    return replace(meeting, participants=(*meeting.participants, participant))


async def place(
    cloud: Cloud,
    meeting: MeetingRecord,
    *,
    org: str,
    device_id: str,
    profile: DeviceProfile,
    results: Iterable[ProbeResult],
    srtp_profile: SrtpProfile,
    existing: ParticipantRecord | None = None,
    exclude: frozenset[str] = frozenset(),
) -> tuple[MeetingRecord, ParticipantRecord, Joined]:
    """Assign a node, allocate the leg there, cascade it into the meeting.

    With ``existing`` the participant keeps its id and SSRC and gets a new
    leg (reassignment); nodes in ``exclude`` are not candidates. ``NoCandidate``
    when no node fits, ``NodeUnavailable`` when the chosen one does not take the leg.
    """
    others = tuple(p for p in meeting.participants if existing is None or p.id != existing.id)
    # the meeting's org's view: its clusters serve it, a guest's own org's do not
    nodes = cloud.registry.visible(meeting.org, healthy_only=False)
    try:
        chosen = assign(org=org, profile=profile, nodes=nodes, results=list(results),
                        meeting_nodes=frozenset(p.node_id for p in others),
                        scope=scope_of(cloud, meeting), exclude=exclude)
    except PrivateMeetingUnreachable:
        cloud.metrics.placements.labels(Rule.PRIVATE_REFUSED).inc()
        raise
    ice = IceCredentials.generate()
    srtp = SrtpParams(profile=srtp_profile.value,
                      client_to_node=SecretStr(SrtpKeys.generate(srtp_profile).to_b64()),
                      node_to_client=SecretStr(SrtpKeys.generate(srtp_profile).to_b64()))
    participant = ParticipantRecord(
        id=existing.id if existing else "p-" + secrets.token_hex(5),
        device_id=device_id, node_id=chosen.node.id,
        ssrc=existing.ssrc if existing else unique_ssrc(meeting),
        leg_id="leg-" + secrets.token_hex(6),
    )
    command = AllocateLeg(
        request_id=secrets.token_hex(8), leg_id=participant.leg_id, meeting_id=meeting.id,
        participant_id=participant.id, ssrc=participant.ssrc, ice=ice, srtp=srtp,
    )
    meeting = await seat(cloud, meeting, others=others, chosen=chosen, nodes=nodes,
                         participant=participant, command=command)
    joined = Joined(
        meeting_id=meeting.id, participant_id=participant.id, node=chosen.node,
        plan=list(chosen.plan), ice=ice, srtp=srtp, ssrc=participant.ssrc, reason=chosen.reason,
    )
    return meeting, participant, joined
