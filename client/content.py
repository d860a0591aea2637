"""Screen sharing as a participant lives it: the floor, the content leg, the frames.

A :class:`Content` belongs to one :class:`client.call.Call`. With ``share`` it asks
the cloud for the floor (``POST …/floor``), opens a content leg (``POST
…/participants/{pid}/content``) racing the content ladder (TCP 5004, TCP 33434, TLS
443, the proxy: ``wire.transports.CONTENT_LADDER``) and sends synthetic frames shaped
like a shared screen: a few frames a second, each a burst of tens of ~1100-byte
packets, the last one marked (RFC 3550 §5.1). Every participant opens a content leg
when the floor is granted to someone else and counts the frames it receives; a
presenter whose floor is taken over stops sending and is told (``lost_floor``).

A device profile that cannot use TCP (rooms and boards: UDP only) can neither present
nor receive: ``refused`` says why, and the call goes on with audio and video.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, Final, Literal, Protocol

import aiohttp

from client.errors import ApiError, MediaError
from client.media import VIDEO_PACKET_BYTES, MediaSession
from wire.errors import ProfileRefused
from wire.models import Event, FloorView, Joined, MeetingView
from wire.transports import DeviceProfile, RungName, check_content

log = logging.getLogger(__name__)

#: A shared screen changes a few times a second and each change is a large frame: 2
#: frames a second of 30 packets of 1100 bytes (about 530 kbit/s) is the synthetic load.
CONTENT_FPS: Final = 2.0
PACKETS_PER_FRAME: Final = 30
VIDEO_CLOCK_HZ: Final = 90_000  # RFC 3551 §5: video payload types run a 90 kHz clock
#: While no content leg is open, the meeting's presenter is also read from its view this
#: often: a floor granted before this device's events socket was up is not missed.
PRESENTER_POLL_S: Final = 5.0

Role = Literal["presenter", "receiver", "none"]
#: what opening a content leg may fail with: the cloud's answer, the ladder, the network
LEG_FAILURES: Final = (ApiError, MediaError, ProfileRefused, aiohttp.ClientError, OSError,
                       TimeoutError)


class ContentApi(Protocol):
    """What content asks the cloud (:class:`client.api.CloudApi` is one)."""

    async def take_floor(self, meeting_id: str, participant_id: str, *,
                         take_over: bool = False) -> FloorView: ...

    async def release_floor(self, meeting_id: str) -> FloorView: ...

    async def open_content(self, meeting_id: str, participant_id: str) -> Joined: ...

    async def meeting(self, meeting_id: str) -> MeetingView: ...


class ContentDevice(Protocol):
    """What content needs of its device (:class:`client.device.Device` is one)."""

    @property
    def api(self) -> ContentApi: ...

    @property
    def profile(self) -> DeviceProfile: ...

    async def connect(self, joined: Joined, *, attempts: list[Any] | None = None
                      ) -> MediaSession: ...


@dataclass(frozen=True, slots=True)
class ContentReport:
    """The ``content`` section of ``pinhole call --json``."""

    role: Role  # presenter: this device presented; receiver: it received; none: neither
    transport: RungName | None  # the content leg's rung
    node: str | None
    frames_sent: int
    packets_sent: int
    bytes_sent: int
    frames_received: int
    packets_received: int
    bytes_received: int
    #: from the join request: the first frame sent (presenter) or received (receiver)
    time_to_first_frame_ms: float | None
    presenter: str | None  # the last presenter this device knew of
    lost_floor: bool  # another participant took the floor over from this one
    refused: str | None  # why this device did not present, or could not receive
    #: the content ladder's race, each rung's outcome (``rung``, ``ok``, ``ms``, ``error``)
    attempts: tuple[dict[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"role": self.role, "transport": self.transport, "node": self.node,
                "frames_sent": self.frames_sent, "packets_sent": self.packets_sent,
                "bytes_sent": self.bytes_sent, "frames_received": self.frames_received,
                "packets_received": self.packets_received,
                "bytes_received": self.bytes_received,
                "time_to_first_frame_ms": self.time_to_first_frame_ms,
                "presenter": self.presenter, "lost_floor": self.lost_floor,
                "refused": self.refused, "attempts": list(self.attempts)}


@dataclass
class Content:
    """One participant's screen sharing in one call (see the module's docstring)."""

    device: ContentDevice
    joined: Joined
    start: float  # the join request's time on ``clock``
    share: bool = False
    take_over: bool = False
    consent_s: float = 4.0
    fps: float = CONTENT_FPS
    packets_per_frame: int = PACKETS_PER_FRAME
    clock: Callable[[], float] = time.monotonic
    session: MediaSession | None = None
    presenter: str | None = None
    presenting: bool = False
    presented: bool = False
    lost_floor: bool = False
    refused: str | None = None
    attempts: list[Any] = field(default_factory=list)
    _opening: asyncio.Lock = field(default_factory=asyncio.Lock)
    _unable: bool = False  # the profile can neither present nor receive (a refused floor can)
    _earlier: list[MediaSession] = field(default_factory=list)  # legs before a move
    _frames: int = 0

    @property
    def me(self) -> str:
        return self.joined.participant_id

    async def begin(self) -> None:
        """Present (with ``share``), or receive what someone already presents."""
        try:
            check_content(self.device.profile)
        except ProfileRefused as exc:
            self.refused, self._unable = str(exc), True
            if self.share:
                log.warning("cannot share: %s", exc)
            return
        if self.share:
            await self._present()
        if not self.presenting:
            await self._look()

    async def _present(self) -> None:
        api = self.device.api
        try:
            floor = await api.take_floor(self.joined.meeting_id, self.me,
                                         take_over=self.take_over)
        except ApiError as exc:
            self.refused = f"{exc.code}: {exc.detail}"
            log.warning("the floor was refused: %s", exc.detail)
            return
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.refused = f"the cloud did not answer the floor request: {exc}"
            log.warning("%s", self.refused)
            return
        self.presenter = floor.presenter
        try:
            await self._open()
        except LEG_FAILURES as exc:
            self.refused = f"no content leg: {exc}"
            log.warning("no content leg: %s", exc)
            with contextlib.suppress(ApiError, aiohttp.ClientError, OSError, TimeoutError):
                await api.release_floor(self.joined.meeting_id)
            return
        self.presenting = self.presented = self.presenter == self.me

    async def _open(self) -> MediaSession:
        """The content leg, once (both ways: a presenter that loses the floor receives)."""
        async with self._opening:
            if self.session is None:
                leg = await self.device.api.open_content(self.joined.meeting_id, self.me)
                self.session = await self.device.connect(leg, attempts=self.attempts)
                self.session.start_keepalives(self.consent_s)
                log.info("content leg on %s over %s", leg.node.id, self.session.rung)
            return self.session

    async def _receive(self, presenter: str) -> None:
        self.presenter = presenter
        if presenter == self.me or self._unable:
            return
        try:
            await self._open()
        except LEG_FAILURES as exc:
            log.warning("cannot receive %s's content: %s", presenter, exc)

    async def _look(self) -> None:
        """The meeting's presenter from its view (a floor granted before the events)."""
        with contextlib.suppress(ApiError, aiohttp.ClientError, OSError, TimeoutError):
            view = await self.device.api.meeting(self.joined.meeting_id)
            if view.presenter is not None and self.session is None:
                await self._receive(view.presenter)

    async def on_event(self, event: Event) -> None:
        """``floor.*`` events of this meeting; this participant's ``media.reassigned``."""
        if event.meeting_id != self.joined.meeting_id:
            return
        if event.type == "media.reassigned" and event.participant_id == self.me:
            await self._moved()
            return
        if event.type in ("floor.granted", "floor.taken_over") and event.participant_id:
            if event.previous_participant_id == self.me and self.presenting:
                self.presenting, self.lost_floor = False, True
                log.warning("%s took the floor over: this device stops presenting",
                            event.participant_id)
            await self._receive(event.participant_id)
        elif event.type in ("floor.released", "floor.freed"):
            self.presenter = None

    async def stop(self) -> None:
        """Stop presenting: the floor goes back to the cloud (``floor.released`` to all);
        the content leg stays open, to receive the next presenter."""
        if self.presenting:
            self.presenting = False
            await self.device.api.release_floor(self.joined.meeting_id)

    async def _moved(self) -> None:
        """The participant was placed on another node: its content leg there is a new one
        (the old node's went with the old placement)."""
        if self.session is None:
            return
        self.session.close()
        self._earlier.append(self.session)
        self.session = None
        if self.presenting or self.presenter is not None:
            try:
                await self._open()
            except LEG_FAILURES as exc:
                log.warning("no content leg on the new node: %s", exc)

    async def run(self, hang_up: asyncio.Event | None = None) -> None:
        """Until cancelled (or ``hang_up``): send frames while presenting; look for a
        presenter while no content leg is open."""
        period = 1.0 / self.fps
        ts_step = round(VIDEO_CLOCK_HZ / self.fps)
        next_look = self.clock() + PRESENTER_POLL_S
        while hang_up is None or not hang_up.is_set():
            session = self.session
            if self.presenting and session is not None:
                with contextlib.suppress(MediaError, OSError):
                    session.send_frame(self._frames, self.packets_per_frame,
                                       VIDEO_PACKET_BYTES, ts_step=ts_step)
                    self._frames += 1
            elif session is None and not self._unable and self.clock() >= next_look:
                next_look = self.clock() + PRESENTER_POLL_S
                await self._look()
            await asyncio.sleep(period)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()

    def report(self) -> ContentReport:
        """Totals over every content leg of the call (a move opens a new one)."""
        legs = [*self._earlier, *([self.session] if self.session is not None else [])]
        last = legs[-1] if legs else None
        role: Role = ("presenter" if self.presented else
                      "receiver" if last is not None else "none")
        firsts = [s.first_frame_at if role == "receiver" else s.first_sent_at for s in legs]
        first = next((at for at in firsts if at is not None), None)

        def total(name: str) -> int:
            return sum(int(getattr(s.counters, name)) for s in legs)

        return ContentReport(
            role=role, transport=last.rung if last is not None else None,
            node=last.joined.node.id if last is not None else None,
            frames_sent=total("frames_sent"), packets_sent=total("packets_sent"),
            bytes_sent=total("bytes_sent"), frames_received=total("frames_received"),
            packets_received=total("packets_received"),
            bytes_received=total("bytes_received"),
            time_to_first_frame_ms=None if first is None
            else round(max(0.0, first - self.start) * 1000, 2),
            presenter=self.presenter, lost_floor=self.lost_floor, refused=self.refused,
            attempts=tuple(asdict(a) for a in self.attempts
                           if is_dataclass(a) and not isinstance(a, type)))
