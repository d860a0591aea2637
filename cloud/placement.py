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

from cloud.assignment import Assignment, assign
from cloud.cascades import open_cascades
from cloud.errors import NodeUnavailable
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
    if chosen.reason.rule == "hybrid-overflow":
        full = [c.node_id for c in chosen.reason.candidates if c.excluded == "full"
                and any(n.id == c.node_id and n.kind == "hybrid" for n in nodes)]
        cloud.note("overflow", f"{' and '.join(full)} full: {participant.id} overflows to "
                   f"{chosen.node.id}", meeting=meeting.id, participant=participant.id,
                   device=participant.device_id, node=full[0] if full else None,
                   to_node=chosen.node.id)
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
    nodes = [n for n in cloud.visible_nodes(org, healthy_only=False) if n.id not in exclude]
    chosen = assign(org=org, profile=profile, nodes=nodes, results=list(results),
                    meeting_nodes=frozenset(p.node_id for p in others))
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
