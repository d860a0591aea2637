"""The cloud's REST and events API, as the client library calls it."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from typing import TypeVar
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ValidationError
from websockets.asyncio.client import connect

from client.errors import ApiError as ApiError
from client.errors import InspectionError as InspectionError
from client.errors import PinError as PinError
from client.inspection import diagnose_connection, pin_mismatch
from wire.models import (
    CallMetrics,
    DeviceRegistered,
    DeviceRegistration,
    ErrorBody,
    Event,
    FloorRequest,
    FloorView,
    Joined,
    JoinRequest,
    MeetingCreate,
    MeetingCreated,
    MeetingView,
    NodeList,
    ReachabilityReport,
    ReassignRequest,
    StoredReachability,
    WebRtcJoined,
    WebRtcOffer,
)
from wire.tls import check_pins

M = TypeVar("M", bound=BaseModel)


class CloudApi:
    """One device's conversation with the cloud over HTTPS."""

    def __init__(self, base_url: str, ssl_context: ssl.SSLContext | None,
                 *, proxy: str | None = None, pins: Sequence[str] = ()) -> None:
        self.base_url = base_url.rstrip("/")
        # the cloud's SPKI pins, "sha256/<base64>" (RFC 7469 §2.4), primary and backup, from
        # the enrollment material; never learned from a connection
        self.pins = tuple(pins)
        self.seen_pin: str | None = None  # what the cloud presented last (for diagnosis only)
        self._pin_failure: str | None = None
        self._ssl: ssl.SSLContext | bool = self._pinning(
            ssl_context if ssl_context is not None else ssl.create_default_context())
        self._proxy = proxy
        self._session: aiohttp.ClientSession | None = None
        self.token: str | None = None
        self.device_id: str | None = None
        self.malformed_events = 0

    async def __aenter__(self) -> CloudApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def _call(
        self, method: str, path: str, body: BaseModel | None, answer: type[M] | None
    ) -> M | None:
        data = body.model_dump_json().encode() if body is not None else None
        headers = {**self._headers(), "Content-Type": "application/json"}
        try:
            async with self._http().request(
                method, self.base_url + path, data=data, headers=headers, ssl=self._ssl,
                proxy=self._proxy,
            ) as response:
                return await self._answer(response, answer)
        except aiohttp.ClientError as exc:
            raise self._diagnosed(exc) from None

    @property
    def host(self) -> str:
        """The cloud's name or address and port, as this device connects to it."""
        parts = urlsplit(self.base_url)
        return f"{parts.hostname}:{parts.port or 443}"

    def _diagnosed(self, exc: aiohttp.ClientError) -> Exception:
        """The error to raise for ``exc``: TLS inspection when it is that, else ``exc``."""
        if self._pin_failure is not None:
            return PinError(self._pin_failure)
        diagnosis = diagnose_connection(exc, self.host)
        return InspectionError(diagnosis) if diagnosis is not None else exc

    async def _answer(self, response: aiohttp.ClientResponse, answer: type[M] | None
                      ) -> M | None:
        raw = await response.read()
        if response.status >= 400:
            try:
                err = ErrorBody.model_validate_json(raw)
            except ValueError:
                raise ApiError(response.status, "http_error", raw[:200].decode(
                    "utf-8", "replace")) from None
            raise ApiError(response.status, err.error, err.detail)
        if answer is None:
            return None
        return answer.model_validate_json(raw)

    def _pinning(self, context: ssl.SSLContext) -> ssl.SSLContext:
        """Check the cloud's key inside every TLS handshake (also inside a proxy tunnel).

        The check is installed on ``context`` itself, so each CloudApi needs
        its own context (``client_context()`` makes a new one per call).
        """
        if getattr(context.sslobject_class, "pinning_for", None) is not None:
            raise ValueError("this SSLContext already pins for another CloudApi; "
                             "give each CloudApi its own context")
        api = self

        class PinnedObject(ssl.SSLObject):
            pinning_for = api

            def do_handshake(self) -> None:
                super().do_handshake()  # raises SSLWantRead… until the handshake is done
                der = self.getpeercert(binary_form=True)
                if der is not None:
                    api._peer(der)

        context.sslobject_class = PinnedObject
        return context

    def _peer(self, der: bytes) -> None:
        check = check_pins(der, self.pins)
        self.seen_pin = check.seen
        if not check.matched:  # RFC 7469 §2.6: no pin matched
            self._pin_failure = pin_mismatch(self.host, self.seen_pin, self.pins)
            raise ssl.SSLError("public key pin mismatch")

    async def _get(self, path: str, answer: type[M]) -> M:
        result = await self._call("GET", path, None, answer)
        assert result is not None
        return result

    async def _send(self, method: str, path: str, body: BaseModel, answer: type[M]) -> M:
        result = await self._call(method, path, body, answer)
        assert result is not None
        return result

    async def register(self, registration: DeviceRegistration) -> DeviceRegistered:
        answer = await self._send("POST", "/v1/devices", registration, DeviceRegistered)
        self.token = answer.token.get_secret_value()
        self.device_id = answer.device_id
        return answer

    async def nodes(self) -> NodeList:
        return await self._get("/v1/nodes", NodeList)

    async def put_reachability(self, report: ReachabilityReport) -> StoredReachability:
        path = f"/v1/devices/{self.device_id}/reachability"
        return await self._send("PUT", path, report, StoredReachability)

    async def get_reachability(self) -> StoredReachability:
        return await self._get(f"/v1/devices/{self.device_id}/reachability", StoredReachability)

    async def create_meeting(self, title: str = "", meeting_id: str | None = None, *,
                             private: bool = False) -> MeetingCreated:
        """A new meeting; with ``meeting_id``, that meeting (created by whoever asks first);
        ``private``: all its media on the org's clusters."""
        return await self._send("POST", "/v1/meetings",
                                MeetingCreate(title=title, id=meeting_id, private=private),
                                MeetingCreated)

    async def join(self, meeting_id: str, request: JoinRequest | None = None) -> Joined:
        path = f"/v1/meetings/{meeting_id}/participants"
        return await self._send("POST", path, request or JoinRequest(), Joined)

    async def join_webrtc(self, meeting_id: str, offer_sdp: str) -> WebRtcJoined:
        """Join with a WebRTC endpoint's SDP offer; the answer is for that endpoint."""
        path = f"/v1/meetings/{meeting_id}/webrtc"
        return await self._send("POST", path, WebRtcOffer(sdp=offer_sdp), WebRtcJoined)

    async def reassign(self, meeting_id: str, participant_id: str, node_id: str) -> Joined:
        """This device's leg to ``node_id`` is silent: ask for an assignment elsewhere."""
        path = f"/v1/meetings/{meeting_id}/participants/{participant_id}/reassign"
        return await self._send("POST", path, ReassignRequest(node_id=node_id), Joined)

    async def take_floor(self, meeting_id: str, participant_id: str, *,
                         take_over: bool = False) -> FloorView:
        """Present: the content floor (409 ``floor_held`` names the presenter)."""
        return await self._send("POST", f"/v1/meetings/{meeting_id}/floor",
                                FloorRequest(participant_id=participant_id,
                                             take_over=take_over), FloorView)

    async def release_floor(self, meeting_id: str) -> FloorView:
        """Stop presenting (409 ``not_presenter`` when this device does not present)."""
        answer = await self._call("DELETE", f"/v1/meetings/{meeting_id}/floor", None,
                                  FloorView)
        assert answer is not None
        return answer

    async def open_content(self, meeting_id: str, participant_id: str) -> Joined:
        """A content (screen sharing) leg on the participant's node."""
        answer = await self._call(
            "POST", f"/v1/meetings/{meeting_id}/participants/{participant_id}/content", None,
            Joined)
        assert answer is not None
        return answer

    async def leave(self, meeting_id: str, participant_id: str) -> None:
        await self._call("DELETE", f"/v1/meetings/{meeting_id}/participants/{participant_id}",
                         None, None)

    async def meeting(self, meeting_id: str) -> MeetingView:
        return await self._get(f"/v1/meetings/{meeting_id}", MeetingView)

    async def report_call(self, metrics: CallMetrics) -> None:
        await self._call("POST", "/v1/metrics/calls", metrics, None)

    def _events_url(self) -> str:
        return (self.base_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
                + "/v1/events")

    def _connect_events(self) -> connect:
        """The events WebSocket (the ``websockets`` client): the same pin check inside the
        TLS handshake, the same proxy; a ping every 2 s that must be answered within 2 s,
        so a hung cloud is noticed and the device reconnects (to another replica)."""
        ssl_context = self._ssl if self._events_url().startswith("wss://") else None
        return connect(self._events_url(), ssl=ssl_context, additional_headers=self._headers(),
                       proxy=self._proxy, compression=None, open_timeout=15.0,
                       ping_interval=2.0, ping_timeout=2.0, close_timeout=1.0)

    async def check_events(self) -> None:
        """Open the events WebSocket and close it: does WSS get through?"""
        try:
            async with self._connect_events():
                return
        except OSError:
            if self._pin_failure is not None:  # the pin check failed inside the handshake
                raise PinError(self._pin_failure) from None
            raise

    async def events(self) -> AsyncIterator[Event]:
        """Events for this device until the connection closes."""
        async with self._connect_events() as ws:
            async for message in ws:
                if not isinstance(message, str):
                    continue
                try:
                    event = Event.model_validate_json(message)
                except ValidationError:
                    self.malformed_events += 1  # dropped and counted, the stream goes on
                    continue
                yield event
