"""The floor of a meeting's content stream: one presenter at a time, as pure rules.

No I/O and no clock: the caller passes ``now`` and keeps the :class:`Floor` with
the meeting (:class:`cloud.store.MeetingRecord`), under the meeting's lock, so
two presenters racing for a free floor get exactly one floor between them.

- A participant asks for the floor: a free floor is **granted**; asking again while
  presenting changes nothing; a floor held by another is refused with
  :class:`FloorHeld` (naming the presenter) unless the request takes it over, when the
  floor is **taken over** and the previous presenter is named (and told).
- The presenter **releases** it; a release by anyone else is :class:`NotPresenter`.
- The presenter leaves, or is removed (its leg freed for lost consent, its node gone):
  the floor is **freed**.

Every change is a :class:`FloorDecision` whose ``change`` the cloud announces to every
participant (``floor.<change>`` events) and counts (``pinhole_floor_changes_total``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FloorChange(enum.StrEnum):
    """How the floor changed hands; each is a ``floor.<value>`` event."""

    GRANTED = "granted"
    TAKEN_OVER = "taken_over"
    RELEASED = "released"
    FREED = "freed"


@dataclass(frozen=True, slots=True)
class Floor:
    """Who presents, since when (the cloud's clock)."""

    presenter: str  # a participant id
    since: float


@dataclass(frozen=True, slots=True)
class FloorDecision:
    """The floor after a request, and what changed (``None``: nothing did)."""

    floor: Floor | None
    change: FloorChange | None = None
    previous: str | None = None  # the presenter who lost the floor, if one did


class FloorError(Exception):
    """Root of the floor's refusals."""


class FloorHeld(FloorError):
    """The floor is someone else's and the request did not take it over."""

    def __init__(self, presenter: str) -> None:
        super().__init__(f"{presenter} presents now; ask again to take the floor over")
        self.presenter = presenter


class NotPresenter(FloorError):
    """A release by a participant who does not hold the floor."""


def take(current: Floor | None, participant: str, *, take_over: bool,
         now: float) -> FloorDecision:
    """``participant`` asks for the floor (``take_over``: even from another presenter)."""
    if current is None:
        return FloorDecision(Floor(participant, now), FloorChange.GRANTED)
    if current.presenter == participant:
        return FloorDecision(current)  # already presenting: nothing changes
    if not take_over:
        raise FloorHeld(current.presenter)
    return FloorDecision(Floor(participant, now), FloorChange.TAKEN_OVER, current.presenter)


def release(current: Floor | None, participant: str) -> FloorDecision:
    """The presenter gives the floor back."""
    if current is None or current.presenter != participant:
        holder = "nobody" if current is None else current.presenter
        raise NotPresenter(f"{participant} does not hold the floor ({holder} does)")
    return FloorDecision(None, FloorChange.RELEASED, participant)


def leave(current: Floor | None, participant: str) -> FloorDecision:
    """``participant`` is gone from the meeting: the floor is freed if it presented."""
    if current is None or current.presenter != participant:
        return FloorDecision(current)
    return FloorDecision(None, FloorChange.FREED, participant)
