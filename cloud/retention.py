"""Forget what only grows: meetings that ended, after ``--meeting-retention-s``.

Before: meetings and their ids were kept after they ended. A meeting whose
last participant left (or that nobody ever joined) is deleted with its id
once it has been empty for the retention period; the count of meetings
forgotten is kept (``pinhole_meetings_forgotten_total``). End-of-call
reports are bounded by the store itself (:class:`cloud.store.Retention`).
"""

from __future__ import annotations

import asyncio
import logging

from cloud.redis_errors import raise_if_cancelling
from cloud.state import Cloud

log = logging.getLogger(__name__)


def _expired(since: float | None, now: float, retention_s: float) -> bool:
    return since is not None and now - since >= retention_s


async def forget_ended_meetings(cloud: Cloud, now: float) -> int:
    """Delete the meetings empty for the retention period; how many were forgotten."""
    retention_s = cloud.settings.meeting_retention_s
    forgotten = 0
    for listed in await cloud.store.list_meetings():
        if not _expired(listed.idle_since(), now, retention_s):
            continue
        async with cloud.store.meeting_lock(listed.id):
            meeting = await cloud.store.get_meeting(listed.id)  # someone may have joined
            if meeting is None or not _expired(meeting.idle_since(), now, retention_s):
                continue
            await cloud.store.delete_meeting(meeting.id)
        forgotten += 1
    cloud.metrics.meetings_forgotten += forgotten
    return forgotten


async def sweep(cloud: Cloud) -> None:
    """Run :func:`forget_ended_meetings` about every minute (sooner for short retentions)."""
    interval = max(0.05, min(60.0, cloud.settings.meeting_retention_s / 4))
    while True:
        raise_if_cancelling()
        await asyncio.sleep(interval)
        try:
            forgotten = await forget_ended_meetings(cloud, cloud.clock())
        except Exception as exc:  # the store is away: try again next round, one line
            raise_if_cancelling()
            log.warning("cannot forget ended meetings now: %s", exc)
            continue
        if forgotten:
            log.info("forgot %d ended meeting(s)", forgotten)
