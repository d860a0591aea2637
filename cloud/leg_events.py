"""Leg events from the nodes, applied to the meetings they change.

A node reports what happens to a leg over its control channel (``latched``,
``relatched``, ``freed``, ``consent_expired``). The registry hands each one to
a :class:`LegEventQueue` it is given at construction; :func:`follow`, a
background task of the cloud, applies each to its meeting: the rung a
participant latched on (``GET /v1/meetings/{id}``), a participant gone when
its node freed the leg, consent lost in the console's history; and a presenter whose
leg lost consent frees the meeting's floor (docs/design.md "Content"): a device killed
while presenting gives the floor back within the consent timeout (RFC 7675 §5.1: 30 s),
not the leg timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import Final

from cloud.cascades import prune_cascades
from cloud.errors import StoreUnavailable
from cloud.redis_errors import raise_if_cancelling
from cloud.sharing import after_leaving, free_floor_of
from cloud.state import Cloud
from cloud.store import without_participant
from wire.models import Event, LegEvent

LIMIT: Final = 1024  # leg events waiting for the cloud; past that, dropped and counted

log = logging.getLogger(__name__)


class LegEventQueue:
    """Leg events in arrival order, bounded: past ``limit`` one is dropped and counted
    (``dropped``), so a store that stalls cannot grow the cloud's memory."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._queue: asyncio.Queue[tuple[str, LegEvent]] = asyncio.Queue(limit)
        self.dropped = 0

    def put(self, node_id: str, event: LegEvent) -> None:
        try:
            self._queue.put_nowait((node_id, event))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("leg event %s of %s dropped: %d waiting (%d dropped so far)",
                        event.event, event.leg_id, self._queue.qsize(), self.dropped)

    async def get(self) -> tuple[str, LegEvent]:
        return await self._queue.get()


async def follow(cloud: Cloud, events: LegEventQueue) -> None:
    """Run until cancelled: apply every leg event, each in its own task (one waiting for
    a meeting's lock holds up no other meeting); cancelled, it cancels them."""
    running: set[asyncio.Task[None]] = set()
    try:
        while True:
            node_id, event = await events.get()
            task = asyncio.create_task(_apply(cloud, node_id, event))
            running.add(task)
            task.add_done_callback(running.discard)
    finally:
        for task in list(running):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _apply(cloud: Cloud, node_id: str, event: LegEvent) -> None:
    try:
        await record_leg_event(cloud, node_id, event)
    except StoreUnavailable as exc:  # the readiness watch reports the outage
        raise_if_cancelling()
        log.warning("leg event %s of %s not applied: %s", event.event, event.leg_id, exc)


async def record_leg_event(cloud: Cloud, node_id: str, event: LegEvent) -> None:
    """Keep the transport a participant's leg latched on (GET /v1/meetings/{id}); a leg the
    node freed (no consent for the leg timeout) means its participant left.

    With replicas, the leg may have been placed by another replica (or one that
    died since): the meeting that holds the leg is then looked up in the store.
    """
    if event.event not in ("latched", "relatched", "freed", "consent_expired"):
        return
    where = cloud.legs.get(event.leg_id)
    if where is None:
        where = next(((m.id, p.id) for m in await cloud.store.list_meetings()
                      for p in m.participants
                      if event.leg_id in (p.leg_id, p.content_leg_id)), None)
    if where is None:
        return
    if event.event == "consent_expired":  # RFC 7675 §5.1: the node stops sending to it
        cloud.history.note(
            "consent_lost", f"{where[1]}'s leg on {node_id} lost consent over "
            f"{event.rung or 'its transport'}: the device stopped answering",
            meeting=where[0], participant=where[1], node=node_id)
        await free_floor_of(cloud, *where)
        return
    if event.event == "freed":  # the node timed it out: no consent for the leg timeout
        await _drop_gone(cloud, node_id, event.leg_id, *where)
        return
    meeting_id, pid = where
    async with cloud.store.meeting_lock(meeting_id):
        meeting = await cloud.store.get_meeting(meeting_id)
        if meeting is None:
            return
        updated = tuple(  # a content leg's rung is the participant's content_rung
            (replace(p, content_rung=event.rung) if p.content_leg_id == event.leg_id
             else replace(p, rung=event.rung)) if p.id == pid else p
            for p in meeting.participants
        )
        await cloud.store.put_meeting(replace(meeting, participants=updated))
    log.info("leg %s of %s on node %s %s over %s", event.leg_id, pid, node_id, event.event,
             event.rung)


async def _drop_gone(cloud: Cloud, node_id: str, leg_id: str, meeting_id: str, pid: str) -> None:
    """A participant whose leg the node freed has left (a client that crashed or went
    away never says so): without this its meeting would never end, nor be forgotten."""
    async with cloud.store.meeting_lock(meeting_id):
        meeting = await cloud.store.get_meeting(meeting_id)
        gone = next((p for p in meeting.participants if p.id == pid and p.leg_id == leg_id),
                    None) if meeting is not None else None
        if meeting is None or gone is None:
            return
        before = meeting
        meeting = await prune_cascades(cloud, without_participant(meeting, pid))
        if not meeting.participants:
            meeting = replace(meeting, ended_at=cloud.clock())
        await cloud.store.put_meeting(meeting)
    cloud.legs.pop(leg_id, None)
    log.info("participant %s left meeting %s: node %s freed its leg (no consent)", pid,
             meeting_id, node_id)
    cloud.history.note(
        "left", f"{pid} left: {node_id} freed its leg (no consent for the leg timeout)",
        meeting=meeting_id, participant=pid, node=node_id)
    await cloud.store.publish(
        (p.device_id for p in meeting.participants),
        Event(type="participant.left", meeting_id=meeting_id, participant_id=pid),
    )
    await after_leaving(cloud, before, meeting, gone)  # its content leg; a freed floor
