"""Screen sharing's effects on a meeting, for every module that changes one.

A floor change is told to the meeting's nodes (``set_floor``: a node relays content
from the presenter only), announced to every participant of the meeting (a ``floor.*``
event), counted (``pinhole_floor_changes_total``) and noted in the console's history;
a participant who leaves, or is removed, has its content leg freed on its node and, if
it presented, the floor freed (:func:`cloud.store.without_participant` frees it, and
:func:`after_leaving` announces it). No HTTP here: the routes are :mod:`cloud.content`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import replace
from typing import Final, Literal

from cloud import floor as floor_rules
from cloud.floor import FloorChange, FloorDecision
from cloud.state import Cloud
from cloud.store import MeetingRecord, ParticipantRecord
from wire.models import Event, SetFloor

_EVENTS: Final[dict[FloorChange, Literal["floor.granted", "floor.taken_over",
                                          "floor.released", "floor.freed"]]] = {
    FloorChange.GRANTED: "floor.granted", FloorChange.TAKEN_OVER: "floor.taken_over",
    FloorChange.RELEASED: "floor.released", FloorChange.FREED: "floor.freed"}


async def tell_nodes(cloud: Cloud, meeting: MeetingRecord,
                     nodes: Iterable[str] | None = None) -> None:
    """Tell the meeting's nodes (or ``nodes``) who presents (``set_floor``): each relays
    content from the presenter's content leg only. Before the answer that lets a
    presenter send, so the node hears of it first over its control channel."""
    presenter = None if meeting.floor is None else meeting.floor.presenter
    command = SetFloor(meeting_id=meeting.id, presenter=presenter)
    for node_id in sorted(meeting.node_ids() if nodes is None else set(nodes)):
        with contextlib.suppress(OSError):  # a node gone: it carries none of it now
            await cloud.registry.send(node_id, command)


async def announce(cloud: Cloud, meeting: MeetingRecord, decision: FloorDecision,
                   presenter: str | None) -> None:
    """Tell the meeting's nodes and every participant, count it, note it (a change only)."""
    change = decision.change
    if change is None:
        return
    await tell_nodes(cloud, meeting)
    who = presenter or decision.previous
    await cloud.store.publish(
        (p.device_id for p in meeting.participants),
        Event(type=_EVENTS[change], meeting_id=meeting.id, participant_id=who,
              previous_participant_id=(decision.previous
                                       if change is FloorChange.TAKEN_OVER else None)))
    cloud.metrics.floor_changes.labels(change.value).inc()  # counted once announced
    text = {FloorChange.GRANTED: f"{who} presents",
            FloorChange.TAKEN_OVER: f"{who} took the floor over from {decision.previous}",
            FloorChange.RELEASED: f"{who} stopped presenting",
            FloorChange.FREED: f"{who} left (or stopped answering) while presenting: "
                                  "the floor is free"}[change]
    cloud.history.note("floor", text, meeting=meeting.id, participant=who)


async def free_floor_of(cloud: Cloud, meeting_id: str, participant_id: str) -> None:
    """``participant_id`` no longer answers (a leg of it lost consent): if it presents, the
    floor is freed and announced, as if it had left (``floor.freed``)."""
    async with cloud.store.meeting_lock(meeting_id):
        meeting = await cloud.store.get_meeting(meeting_id)
        if meeting is None:
            return
        decision = floor_rules.leave(meeting.floor, participant_id)
        if decision.change is None:
            return
        meeting = replace(meeting, floor=decision.floor)
        await cloud.store.put_meeting(meeting)
        await announce(cloud, meeting, decision, None)


async def after_leaving(cloud: Cloud, before: MeetingRecord, after: MeetingRecord,
                        gone: ParticipantRecord, *, node_alive: bool = True) -> None:
    """``gone`` left (or was removed) between ``before`` and ``after`` (as stored): free its
    content leg on its node, and announce the floor freed when it presented
    (:func:`cloud.store.without_participant` freed it)."""
    if gone.content_leg_id is not None:
        cloud.legs.pop(gone.content_leg_id, None)
        if node_alive:
            with contextlib.suppress(OSError):
                await cloud.registry.release(gone.node_id, gone.content_leg_id)
    if before.floor is not None and before.floor.presenter == gone.id and after.floor is None:
        await announce(cloud, after, FloorDecision(None, FloorChange.FREED, gone.id), None)

