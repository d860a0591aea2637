"""A participant's screen sharing (``client.content.Content``) driven by floor events,
against a scripted cloud and unconnected legs: no sockets.

docs/design.md "Content (screen sharing)": the presenter takes the floor, then opens
its content leg; everyone else opens one when the floor is granted to someone; a
presenter whose floor is taken over stops and is told; a UDP-only profile is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from client.content import Content
from client.errors import ApiError
from client.media import MediaSession
from tests.joins import joined
from wire.models import (
    Event,
    FloorView,
    Joined,
    MeetingView,
)
from wire.transports import DeviceProfile, RungName, Transport

ME, OTHER = "p-me", "p-other"


def _joined(participant: str = ME) -> Joined:
    return joined(participant=participant, rung=RungName.TCP_5004, transport=Transport.TCP,
                  rule="content")


@dataclass
class ScriptedCloud:
    """The floor's answers as the cloud gives them, and what was asked."""

    presenter: str | None = None
    asked: list[str] = field(default_factory=list)

    async def take_floor(self, meeting_id: str, participant_id: str, *,
                         take_over: bool = False) -> FloorView:
        self.asked.append("take_floor")
        if self.presenter not in (None, participant_id) and not take_over:
            raise ApiError(409, "floor_held", f"{self.presenter} presents now")
        self.presenter = participant_id
        return FloorView(meeting_id=meeting_id, presenter=participant_id, change="granted")

    async def release_floor(self, meeting_id: str) -> FloorView:
        self.asked.append("release_floor")
        self.presenter = None
        return FloorView(meeting_id=meeting_id, change="released")

    async def open_content(self, meeting_id: str, participant_id: str) -> Joined:
        self.asked.append("open_content")
        return _joined(participant_id)

    async def meeting(self, meeting_id: str) -> MeetingView:
        self.asked.append("meeting")
        return MeetingView(id=meeting_id, org="o", title="", participants=[], cascades=[],
                           presenter=self.presenter)


@dataclass
class ScriptedDevice:
    api: ScriptedCloud
    profile: DeviceProfile = DeviceProfile.DESKTOP
    connected: list[Joined] = field(default_factory=list)

    async def connect(self, joined: Joined, *, attempts: list[Any] | None = None
                      ) -> MediaSession:
        self.connected.append(joined)
        return MediaSession(joined)  # never connected: no sockets here


def _content(device: ScriptedDevice, *, share: bool = False,
             take_over: bool = False) -> Content:
    return Content(device, _joined(), start=0.0, share=share, take_over=take_over)


def _floor(kind: str, who: str, previous: str | None = None, meeting: str = "m") -> Event:
    return Event.model_validate({"type": kind, "meeting_id": meeting, "participant_id": who,
                                 "previous_participant_id": previous})


async def test_the_presenter_takes_the_floor_then_opens_its_content_leg() -> None:
    device = ScriptedDevice(ScriptedCloud())
    content = _content(device, share=True)
    await content.begin()
    assert device.api.asked == ["take_floor", "open_content"]
    assert content.presenting and content.presenter == ME
    report = content.report()
    assert (report.role, report.node, report.refused) == ("presenter", "n1", None)


async def test_a_presenter_whose_floor_is_taken_over_stops_and_is_told() -> None:
    device = ScriptedDevice(ScriptedCloud())
    content = _content(device, share=True)
    await content.begin()
    await content.on_event(_floor("floor.taken_over", OTHER, previous=ME))
    assert not content.presenting and content.lost_floor and content.presenter == OTHER
    assert device.api.asked.count("open_content") == 1  # its leg now receives the other
    report = content.report()
    assert report.role == "presenter" and report.lost_floor


async def test_a_refused_floor_says_who_presents_and_the_loser_watches() -> None:
    device = ScriptedDevice(ScriptedCloud(presenter=OTHER))
    content = _content(device, share=True)
    await content.begin()
    assert content.refused == f"floor_held: {OTHER} presents now"
    assert device.api.asked == ["take_floor", "meeting", "open_content"]
    report = content.report()
    assert (report.role, report.presenter) == ("receiver", OTHER)


async def test_a_receiver_opens_one_content_leg_when_the_floor_is_granted() -> None:
    device = ScriptedDevice(ScriptedCloud())
    content = _content(device)
    await content.begin()
    assert content.session is None and device.api.asked == ["meeting"]
    await content.on_event(_floor("floor.granted", OTHER))
    await content.on_event(_floor("floor.taken_over", "p-third", previous=OTHER))
    assert device.api.asked.count("open_content") == 1 and len(device.connected) == 1
    assert content.presenter == "p-third"
    await content.on_event(_floor("floor.freed", "p-third"))
    assert content.presenter is None and content.report().role == "receiver"


async def test_floor_events_of_another_meeting_are_not_this_one() -> None:
    device = ScriptedDevice(ScriptedCloud())
    content = _content(device)
    await content.on_event(_floor("floor.granted", OTHER, meeting="elsewhere"))
    assert content.session is None and content.presenter is None


async def test_a_room_device_neither_presents_nor_receives_and_says_why() -> None:
    """FNR limitations: room systems send media over UDP only; content is TCP."""
    device = ScriptedDevice(ScriptedCloud(presenter=OTHER), DeviceProfile.ROOM)
    content = _content(device, share=True)
    await content.begin()
    await content.on_event(_floor("floor.granted", OTHER))
    assert device.api.asked == [] and content.session is None
    report = content.report()
    assert report.role == "none" and report.refused is not None
    assert report.refused.startswith("room devices cannot present or receive shared content")


async def test_a_participant_moved_to_another_node_opens_its_content_leg_there() -> None:
    """A failed node's participants are placed again (``media.reassigned``): the content
    leg went with the old placement, so the presenter opens one on its new node, and the
    report totals both legs."""
    device = ScriptedDevice(ScriptedCloud())
    content = _content(device, share=True)
    await content.begin()
    first = content.session
    await content.on_event(Event(type="media.reassigned", meeting_id="m", participant_id=ME))
    assert content.session is not None and content.session is not first
    assert device.api.asked.count("open_content") == 2 and content.presenting
    await content.on_event(Event(type="media.reassigned", meeting_id="m",
                                 participant_id=OTHER))  # another's move is not this one's
    assert device.api.asked.count("open_content") == 2


async def test_stopping_gives_the_floor_back_and_keeps_the_leg_to_receive() -> None:
    device = ScriptedDevice(ScriptedCloud())
    content = _content(device, share=True)
    await content.begin()
    await content.stop()
    await content.stop()  # once is enough
    assert device.api.asked.count("release_floor") == 1 and device.api.presenter is None
    assert not content.presenting and content.session is not None
