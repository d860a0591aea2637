"""Cascades: when a meeting spans nodes, the cloud joins every pair of them (a full mesh).

The media node forwards a packet that arrived over a cascade to its local
participants only, so a full mesh delivers every packet to every participant
exactly once (docs/decisions.md, "Cascades"). The cloud first allocates
the leg on the peer (``allocate_leg`` with ``cascade: true``) and waits for
it, then tells the initiator to ``open_cascade`` with the same credentials.
A hybrid node only ever connects out, so it is always the initiator;
otherwise the node that just joined the meeting is. Two nodes of one hybrid
cluster (the meeting's node full, the next participants on another node of
the cluster) are joined node to node inside the premises, never through the
cloud: the node already in the meeting dials the new one (each takes its
clients' media inbound on the premises' network anyway).

Content (screen sharing) has cascades of its own, opened the same way between two nodes
that both carry a content leg of the meeting (``content: true`` on both ends): each
node's content legs and content cascades relay among themselves only, as its audio and
video legs and their cascades do, so a presenter on one node reaches receivers on the
others, and audio never enters a content leg. A meeting whose participants share no
screen opens none.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace

from pydantic import SecretStr

from cloud.errors import NodeUnavailable
from cloud.state import Cloud
from cloud.store import CascadeRecord, MeetingRecord
from wire.models import (
    AllocateLeg,
    CloseCascade,
    IceCredentials,
    NodeInfo,
    OpenCascade,
    SrtpParams,
)
from wire.srtp import DEFAULT_PROFILE, SrtpKeys

log = logging.getLogger(__name__)


def roles(new: NodeInfo | None, other: NodeInfo | None, new_node: str,
          other_node: str) -> tuple[str, str]:
    """(initiator, peer) of the cascade between ``new_node``, new to the meeting, and
    ``other_node``: a hybrid node initiates (it only connects out); of two hybrid nodes
    (an intra-cluster cascade), the one already in the meeting; else the new node."""
    if other is not None and other.kind == "hybrid":
        return other_node, new_node
    if new is not None and new.kind == "hybrid":
        return new_node, other_node
    return new_node, other_node


def _linked(meeting: MeetingRecord, a: str, b: str, content: bool) -> bool:
    return any({c.from_node, c.to_node} == {a, b} and c.content == content
               for c in meeting.cascades)


def content_nodes(meeting: MeetingRecord) -> set[str]:
    """The nodes that carry a content leg of the meeting."""
    return {p.node_id for p in meeting.participants if p.content_leg_id is not None}


async def open_cascades(cloud: Cloud, meeting: MeetingRecord, new_node: str, *,
                        content: bool = False) -> MeetingRecord:
    """Cascade ``new_node`` with every other node of the meeting not yet linked to it
    (``content``: of the meeting's content legs, with every other node that carries one)."""
    nodes = content_nodes(meeting) if content else meeting.node_ids()
    for other in sorted(nodes - {new_node}):
        if _linked(meeting, new_node, other, content):
            continue
        initiator, peer = roles(cloud.registry.info(new_node), cloud.registry.info(other),
                                new_node, other)
        peer_info = cloud.registry.info(peer)
        if peer_info is None:
            continue
        ice = IceCredentials.generate()
        srtp = SrtpParams(profile=DEFAULT_PROFILE.value,
                          client_to_node=SecretStr(SrtpKeys.generate().to_b64()),
                          node_to_client=SecretStr(SrtpKeys.generate().to_b64()))
        leg_id = "cas-" + secrets.token_hex(6)
        try:
            await cloud.registry.allocate(peer, AllocateLeg(
                request_id=secrets.token_hex(8), leg_id=leg_id, meeting_id=meeting.id,
                participant_id=f"cascade.{initiator}", ssrc=0, ice=ice, srtp=srtp,
                cascade=True, content=content), cloud.settings.cascade_timeout_s)
        except NodeUnavailable as exc:
            log.warning("meeting %s: no cascade %s → %s: %s", meeting.id, initiator, peer, exc)
            continue
        command = OpenCascade(meeting_id=meeting.id, peer=peer_info, leg_id=leg_id,
                              ice=ice, srtp=srtp, content=content)
        if not await cloud.registry.open_cascade(initiator, command):
            await cloud.registry.release(peer, leg_id)
            log.warning("meeting %s: node %s has no control channel; no cascade to %s",
                        meeting.id, initiator, peer)
            continue
        log.info("meeting %s: %scascade %s → %s (%s)", meeting.id,
                 "content " if content else "", initiator, peer, leg_id)
        cloud.metrics.cascades_opened.inc()
        meeting = replace(meeting, cascades=(*meeting.cascades,
                                             CascadeRecord(leg_id, initiator, peer, content)))
    return meeting


async def prune_cascades(cloud: Cloud, meeting: MeetingRecord) -> MeetingRecord:
    """Close the cascades of nodes that no longer carry a participant of the meeting (a
    content cascade: a content leg of it)."""
    nodes, sharing = meeting.node_ids(), content_nodes(meeting)
    kept: list[CascadeRecord] = []
    for cascade in meeting.cascades:
        ends = sharing if cascade.content else nodes
        if cascade.from_node in ends and cascade.to_node in ends:
            kept.append(cascade)
            continue
        await cloud.registry.close_cascade(
            cascade.from_node, CloseCascade(meeting_id=meeting.id, leg_id=cascade.leg_id))
        await cloud.registry.release(cascade.to_node, cascade.leg_id)
        log.info("meeting %s: cascade %s closed", meeting.id, cascade.leg_id)
    return replace(meeting, cascades=tuple(kept))
