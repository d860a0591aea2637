"""Who may use a meeting: its organisation's devices, and guests who hold its id.

A meeting's id is its link, as a meetings service's join link is: a device of another
organisation that holds it joins as a *guest* (placed on the cloud unless the cloud lets
guests onto the meeting org's clusters, :class:`cloud.assignment.Scope`), and may then do
in the meeting what any participant does with its own participant (leave, move, present,
report its quality). The guest's own org's hybrid nodes never serve it there, and the
meeting org's are never in its node list (``GET /v1/nodes`` is its own org's view).

A *private* meeting is not shared that way: another org's device that is not one of its
participants does not see it (``404``, as for an unknown id: an outsider learns nothing
of it), and its join is refused as every join that reaches none of the org's clusters
is (``409 private_meeting_unreachable``, :func:`cloud.assignment.assign`).
"""

from __future__ import annotations

from cloud.errors import NotFound
from cloud.identity import Claims
from cloud.state import Cloud
from cloud.store import MeetingRecord


def is_guest(claims: Claims, meeting: MeetingRecord) -> bool:
    """The device is of another organisation than the meeting's."""
    return claims.org != meeting.org


def visible(claims: Claims, meeting: MeetingRecord, *, joining: bool = False) -> bool:
    """May this device see ``meeting``: its org's always; a guest a meeting that is not
    private, or one it is in; a guest's join of a private meeting reaches the assignment,
    whose refusal says why (``joining``)."""
    if not is_guest(claims, meeting) or not meeting.private or joining:
        return True
    return any(p.device_id == claims.device_id for p in meeting.participants)


async def find_meeting(cloud: Cloud, claims: Claims, meeting_id: str, *,
                       joining: bool = False) -> MeetingRecord:
    """The meeting this device may use, or :class:`NotFound` (unknown, or hidden)."""
    meeting = await cloud.store.get_meeting(meeting_id)
    if meeting is None or not visible(claims, meeting, joining=joining):
        raise NotFound(f"no meeting {meeting_id}")
    return meeting
