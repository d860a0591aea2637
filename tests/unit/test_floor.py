"""The content floor's rules (``cloud.floor``), and the floor kept with the meeting.

Seed (FNR ports table): "Screen Sharing (in app) TCP 5004*": one shared screen per
meeting, so one presenter at a time; the rules take ``now`` from the caller.
"""

from __future__ import annotations

import json

import pytest

from cloud import floor
from cloud.floor import Floor, FloorChange, FloorHeld, NotPresenter
from cloud.redis_store import meeting_from_json, meeting_json
from cloud.store import MeetingRecord, ParticipantRecord, without_participant


def test_a_free_floor_is_granted_at_now() -> None:
    decision = floor.take(None, "p-a", take_over=False, now=12.5)
    assert decision.floor == Floor("p-a", 12.5)
    assert decision.change is FloorChange.GRANTED and decision.previous is None


def test_asking_again_while_presenting_changes_nothing() -> None:
    held = Floor("p-a", 1.0)
    decision = floor.take(held, "p-a", take_over=True, now=9.0)
    assert decision.floor is held and decision.change is None


def test_a_held_floor_is_refused_naming_the_presenter() -> None:
    with pytest.raises(FloorHeld) as caught:
        floor.take(Floor("p-a", 1.0), "p-b", take_over=False, now=2.0)
    assert caught.value.presenter == "p-a"
    assert str(caught.value) == "p-a presents now; ask again to take the floor over"


def test_a_take_over_names_the_presenter_who_lost_the_floor() -> None:
    decision = floor.take(Floor("p-a", 1.0), "p-b", take_over=True, now=2.0)
    assert decision.floor == Floor("p-b", 2.0)
    assert decision.change is FloorChange.TAKEN_OVER and decision.previous == "p-a"


def test_only_the_presenter_releases() -> None:
    assert floor.release(Floor("p-a", 1.0), "p-a") == floor.FloorDecision(
        None, FloorChange.RELEASED, "p-a")
    with pytest.raises(NotPresenter, match="p-b does not hold the floor \\(p-a does\\)"):
        floor.release(Floor("p-a", 1.0), "p-b")
    with pytest.raises(NotPresenter, match="\\(nobody does\\)"):
        floor.release(None, "p-b")


def test_the_presenter_leaving_frees_the_floor_and_anyone_else_leaving_does_not() -> None:
    held = Floor("p-a", 1.0)
    assert floor.leave(held, "p-a") == floor.FloorDecision(None, FloorChange.FREED, "p-a")
    assert floor.leave(held, "p-b") == floor.FloorDecision(held)
    assert floor.leave(None, "p-b") == floor.FloorDecision(None)


def _meeting(presenter: str | None) -> MeetingRecord:
    a = ParticipantRecord("p-a", "dev-a", "node-1", 1, "leg-a", "udp/5004",
                          content_leg_id="leg-ca", content_rung="tcp/5004")
    b = ParticipantRecord("p-b", "dev-b", "node-1", 2, "leg-b")
    return MeetingRecord("m1", "org", "", 0.0, (a, b),
                         floor=None if presenter is None else Floor(presenter, 3.0))


def test_removing_the_presenter_from_its_meeting_frees_the_floor() -> None:
    """Every path that removes a participant (leave, a leg freed for lost consent, a failed
    node's WebRTC endpoint) goes through ``without_participant``: none keeps a presenter
    who is gone."""
    assert without_participant(_meeting("p-a"), "p-a").floor is None
    assert without_participant(_meeting("p-a"), "p-b").floor == Floor("p-a", 3.0)


def test_the_redis_form_keeps_the_floor_and_the_content_leg() -> None:
    meeting = _meeting("p-a")
    assert meeting_from_json(meeting_json(meeting)) == meeting
    assert meeting_from_json(meeting_json(_meeting(None))).floor is None


def test_a_meeting_stored_before_screen_sharing_reads_back_without_a_floor() -> None:
    """Meetings written by an older cloud have no ``floor`` key and shorter participant
    lists: they read back with no presenter and no content leg."""
    stored = json.loads(meeting_json(_meeting(None)))
    del stored["floor"]
    stored["participants"] = [p[:7] for p in stored["participants"]]  # up to webrtc
    meeting = meeting_from_json(json.dumps(stored))
    assert meeting.floor is None
    assert [p.content_leg_id for p in meeting.participants] == [None, None]
