"""Node health over time: reassign the participants of a node that fails, re-probe on return.

Checked every ``heartbeat_s``. A node whose control channel closed, or that
missed ``heartbeat_misses`` heartbeats, is unhealthy: it leaves node lists and
assignment, and every participant on it is placed again (same participant id
and SSRC, a new leg elsewhere) and gets a ``media.reassigned`` event carrying
the new assignment. A node that comes back is healthy again; devices whose
stored report never probed it get ``probe.requested``.

The watch acts on a state, not on an edge: every pass, any node that carries
participants and is not healthy (or no longer known) is emptied, however soon
after its last failure. With several replicas a claim makes one replica do a
pass at a time, and is removed when the pass ends, so it never outlives the
failure; the meeting lock and a re-read make a second pass move nobody twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from cloud.cascades import prune_cascades
from cloud.errors import NoCandidate, NodeUnavailable, StoreUnavailable
from cloud.placement import place
from cloud.redis_errors import raise_if_cancelling
from cloud.sharing import after_leaving
from cloud.state import Cloud
from cloud.store import MeetingRecord, ParticipantRecord, without_participant
from wire.models import Event
from wire.srtp import SrtpProfile
from wire.transports import DeviceProfile

log = logging.getLogger(__name__)


async def reassign_from(cloud: Cloud, node_id: str) -> int:
    """Place every participant of ``node_id`` elsewhere; how many were moved."""
    moved = 0
    for listed in await cloud.store.list_meetings():
        if node_id not in listed.node_ids():
            continue
        async with cloud.store.meeting_lock(listed.id):
            meeting = await cloud.store.get_meeting(listed.id)
            if meeting is None:
                continue
            for participant in [p for p in meeting.participants if p.node_id == node_id]:
                if participant.webrtc:
                    meeting = await _ask_to_reoffer(cloud, meeting, participant, node_id)
                    moved += 1
                    continue
                device = await cloud.store.get_device(participant.device_id)
                stored = await cloud.store.get_reachability(participant.device_id)
                if device is None or stored is None:
                    log.warning("participant %s: no device or report; cannot reassign",
                                participant.id)
                    continue
                try:
                    meeting, placed, joined = await place(
                        cloud, meeting, org=device.org, device_id=device.device_id,
                        profile=DeviceProfile(device.profile), results=stored.report.results,
                        srtp_profile=SrtpProfile.AES_CM_128_HMAC_SHA1_80,
                        existing=participant, exclude=frozenset({node_id}),
                    )
                except (NoCandidate, NodeUnavailable) as exc:
                    log.warning("participant %s stays on failed node %s: %s", participant.id,
                                node_id, exc)
                    cloud.history.note(
                        "refused", f"{device.name} could not leave failed node {node_id}: "
                        f"{exc}", meeting=meeting.id, participant=participant.id,
                        device=device.name, node=node_id)
                    continue
                cloud.legs.pop(participant.leg_id, None)
                cloud.legs[placed.leg_id] = (meeting.id, placed.id)
                await cloud.store.put_meeting(meeting)
                await cloud.store.publish([placed.device_id], Event(
                    type="media.reassigned", meeting_id=meeting.id, participant_id=placed.id,
                    node_id=placed.node_id, assignment=joined))
                cloud.metrics.reassignments.inc()
                cloud.history.note(
                    "failover", f"{device.name} moved from {node_id} to {placed.node_id}: "
                    "the node is down", meeting=meeting.id, participant=placed.id,
                    device=device.name, node=node_id, to_node=placed.node_id,
                    gap_s=cloud.registry.heartbeat_age(node_id))
                moved += 1
                log.info("participant %s moved from %s to %s", placed.id, node_id,
                         placed.node_id)
            meeting = await prune_cascades(cloud, meeting)
            await cloud.store.put_meeting(meeting)
    return moved


async def _ask_to_reoffer(cloud: Cloud, meeting: MeetingRecord,
                          participant: ParticipantRecord, node_id: str) -> MeetingRecord:
    """A WebRTC endpoint on a dead node: its keys came from DTLS with that node, so the
    cloud cannot move it alone. It leaves the meeting and is told to offer again
    (``media.reoffer``, RFC 8829 §5.2: a new offer), which places it on another node."""
    before, meeting = meeting, without_participant(meeting, participant.id)
    cloud.legs.pop(participant.leg_id, None)
    await cloud.store.put_meeting(meeting)
    await after_leaving(cloud, before, meeting, participant, node_alive=False)
    await cloud.store.publish([participant.device_id], Event(
        type="media.reoffer", meeting_id=meeting.id, participant_id=participant.id,
        node_id=node_id))
    await cloud.store.publish((p.device_id for p in meeting.participants), Event(
        type="participant.left", meeting_id=meeting.id, participant_id=participant.id))
    name = await cloud.device_name(participant.device_id)
    cloud.history.note(
        "failover", f"{name} must offer again: its node {node_id} is down (WebRTC)",
        meeting=meeting.id, participant=participant.id, device=name, node=node_id,
        gap_s=cloud.registry.heartbeat_age(node_id))
    log.info("WebRTC participant %s on failed node %s asked to offer again", participant.id,
             node_id)
    return meeting


async def request_probes(cloud: Cloud, node_id: str) -> int:
    """``probe.requested`` to every device whose report never reached ``node_id``."""
    asked = 0
    for device_id in await cloud.store.list_device_ids():
        stored = await cloud.store.get_reachability(device_id)
        if stored is not None and any(r.node_id == node_id for r in stored.report.results):
            continue
        await cloud.store.publish([device_id], Event(type="probe.requested", node_id=node_id))
        asked += 1
    return asked


async def _reassign_claimed(cloud: Cloud, node_id: str) -> int:
    """One replica at a time empties ``node_id``; how many participants it moved."""
    bus = cloud.registry.bus
    name = f"reassign:{node_id}"
    # the claim's TTL only matters if this replica dies mid-pass
    if bus is not None and not await bus.claim(name, 30):
        return 0  # another replica is on it; the next pass sees what it left
    try:
        log.warning("node %s is unhealthy; reassigning its participants", node_id)
        return await reassign_from(cloud, node_id)
    finally:
        if bus is not None:
            await bus.unclaim(name)


async def watch(cloud: Cloud, clock: Callable[[], float] = time.monotonic) -> None:
    """Run until cancelled: empty every failed node that carries participants."""
    every_s = min(cloud.settings.heartbeat_s, 1.0)
    healthy = {n.id for n in cloud.registry.nodes() if n.healthy}
    stuck_until: dict[str, float] = {}  # nobody could be moved: retry later, not every pass
    while True:
        raise_if_cancelling()
        await asyncio.sleep(every_s)
        try:
            healthy = await _pass(cloud, healthy, stuck_until, clock)
        except StoreUnavailable:  # the readiness watch reports it; try again next round
            continue


async def _pass(cloud: Cloud, healthy: set[str], stuck_until: dict[str, float],
                clock: Callable[[], float]) -> set[str]:
    """Empty every failed node that carries participants; probes for nodes back; the
    healthy set now."""
    now = {n.id for n in cloud.registry.nodes() if n.healthy}
    for node_id in sorted(healthy - now):
        bus = cloud.registry.bus
        if bus is None or await bus.claim(f"down:{node_id}", 5):  # one replica says it
            cloud.history.note("node_down", f"node {node_id} is down", node=node_id)
    # a replica that has not yet read the others' nodes would take them all for failed
    if cloud.registry.bus is None or cloud.registry.synced:
        in_use = set().union(*(m.node_ids() for m in await cloud.store.list_meetings()))
        for node_id in sorted(in_use - now):
            if stuck_until.get(node_id, 0.0) > clock():
                continue
            try:
                moved = await _reassign_claimed(cloud, node_id)
            except StoreUnavailable as exc:
                log.warning("reassigning from %s paused: %s", node_id, exc)
                raise
            except Exception:  # one failed pass must not end the watch
                raise_if_cancelling()
                log.exception("reassigning from %s failed", node_id)
                moved = 0
            if not moved:
                stuck_until[node_id] = clock() + 5.0
            else:
                stuck_until.pop(node_id, None)
    for node_id in sorted(now - healthy):
        stuck_until.pop(node_id, None)
        bus = cloud.registry.bus
        if bus is not None and not await bus.claim(f"probe:{node_id}", 5):
            continue
        log.info("node %s is healthy", node_id)
        cloud.history.note("node_up", f"node {node_id} is up", node=node_id)
        await request_probes(cloud, node_id)
    return now
