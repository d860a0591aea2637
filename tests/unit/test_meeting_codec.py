"""The Redis store's meeting form (``cloud.redis_store.meeting_json``) keeps every field.

Meetings are written field by field (``dataclasses.asdict`` deep-copied every
value: a quarter of a join's write) and a participant as the list of its
fields. A field added to a record and forgotten by the codec, or fields read
back in another order, would lose or swap state: every field of every record
is set here, to values that differ.
"""

from __future__ import annotations

import json
from dataclasses import fields, replace

from cloud.floor import Floor
from cloud.redis_store import meeting_from_json, meeting_json
from cloud.store import CascadeRecord, MeetingRecord, ParticipantRecord

MEETING = MeetingRecord(
    id="m1", org="acme", title="standup", created_at=1.5,
    participants=(ParticipantRecord("p1", "d1", "n1", 11, "leg-1", "udp/5004",
                                    content_leg_id="leg-c1", content_rung="tcp/5004"),
                  ParticipantRecord("p2", "d2", "n2", 22, "leg-2", None, webrtc=True)),
    cascades=(CascadeRecord("leg-c", "n1", "n2"), CascadeRecord("leg-s", "n2", "n1", True)),
    ended_at=9.5, floor=Floor("p1", 3.5))


def test_every_field_comes_back() -> None:
    assert meeting_from_json(meeting_json(MEETING)) == MEETING
    assert all(getattr(MEETING, f.name) is not None for f in fields(MeetingRecord))


def test_a_participant_is_the_list_of_its_fields_in_order() -> None:
    stored = json.loads(meeting_json(MEETING))
    assert stored["participants"][0] == ["p1", "d1", "n1", 11, "leg-1", "udp/5004", False,
                                         "leg-c1", "tcp/5004"]
    assert stored["participants"][1][6] is True
    assert len(stored["participants"][0]) == len(fields(ParticipantRecord))
    assert stored["cascades"] == [["leg-c", "n1", "n2", False], ["leg-s", "n2", "n1", True]]


def test_a_cascade_stored_before_content_cascades_reads_as_audio_and_video() -> None:
    """A meeting written before ``content`` joined a cascade's fields (three per cascade)."""
    stored = json.loads(meeting_json(MEETING))
    stored["cascades"] = [c[:3] for c in stored["cascades"]]
    back = meeting_from_json(json.dumps(stored))
    assert [c.content for c in back.cascades] == [False, False]


def test_a_participant_stored_before_webrtc_legs_reads_as_not_webrtc() -> None:
    """A meeting written before ``webrtc`` joined the fields (six per participant)."""
    stored = json.loads(meeting_json(MEETING))
    stored["participants"] = [p[:6] for p in stored["participants"]]
    back = meeting_from_json(json.dumps(stored))
    assert [p.webrtc for p in back.participants] == [False, False]


def test_the_older_form_with_named_fields_still_reads() -> None:
    older = json.dumps({
        "id": "m1", "org": "acme", "title": "standup", "created_at": 1.5,
        "participants": [{"id": "p1", "device_id": "d1", "node_id": "n1", "ssrc": 11,
                          "leg_id": "leg-1", "rung": "udp/5004"},
                         {"id": "p2", "device_id": "d2", "node_id": "n2", "ssrc": 22,
                          "leg_id": "leg-2", "rung": None}],
        "cascades": [{"leg_id": "leg-c", "from_node": "n1", "to_node": "n2"}],
        "ended_at": 9.5})
    assert meeting_from_json(older) == replace(
        MEETING, floor=None, cascades=MEETING.cascades[:1], participants=tuple(
            replace(p, webrtc=False, content_leg_id=None, content_rung=None)
            for p in MEETING.participants))
