"""The cloud's REST and events API, as the client library calls it."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import TypeVar

import aiohttp
from pydantic import BaseModel

from wire.models import (
    CallMetrics,
    DeviceRegistered,
    DeviceRegistration,
    ErrorBody,
    Event,
    Joined,
    JoinRequest,
    MeetingCreate,
    MeetingCreated,
    MeetingView,
    NodeList,
    ReachabilityReport,
    StoredReachability,
)

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """The cloud answered with an error: ``status``, ``code`` and ``detail``."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class CloudApi:
    """One device's conversation with the cloud over HTTPS."""

    def __init__(self, base_url: str, ssl_context: ssl.SSLContext | None,
                 *, proxy: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._proxy = proxy
        self._session: aiohttp.ClientSession | None = None
        self.token: str | None = None
        self.device_id: str | None = None

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
        async with self._http().request(
            method, self.base_url + path, data=data, headers=headers, ssl=self._ssl,
            proxy=self._proxy,
        ) as response:
            raw = await response.read()
            if response.status >= 400:
                try:
                    err = ErrorBody.model_validate_json(raw)
                    raise ApiError(response.status, err.error, err.detail)
                except ValueError:
                    raise ApiError(response.status, "http_error", raw[:200].decode(
                        "utf-8", "replace")) from None
            if answer is None:
                return None
            return answer.model_validate_json(raw)

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

    async def create_meeting(self, title: str = "") -> MeetingCreated:
        return await self._send("POST", "/v1/meetings", MeetingCreate(title=title), MeetingCreated)

    async def join(self, meeting_id: str, request: JoinRequest | None = None) -> Joined:
        path = f"/v1/meetings/{meeting_id}/participants"
        return await self._send("POST", path, request or JoinRequest(), Joined)

    async def leave(self, meeting_id: str, participant_id: str) -> None:
        await self._call("DELETE", f"/v1/meetings/{meeting_id}/participants/{participant_id}",
                         None, None)

    async def meeting(self, meeting_id: str) -> MeetingView:
        return await self._get(f"/v1/meetings/{meeting_id}", MeetingView)

    async def report_call(self, metrics: CallMetrics) -> None:
        await self._call("POST", "/v1/metrics/calls", metrics, None)

    async def check_events(self) -> None:
        """Open the events WebSocket and close it: does WSS get through?"""
        url = self.base_url.replace("https://", "wss://").replace("http://", "ws://")
        async with self._http().ws_connect(url + "/v1/events", headers=self._headers(),
                                           ssl=self._ssl, proxy=self._proxy):
            return

    async def events(self) -> AsyncIterator[Event]:
        """Events for this device until the connection closes."""
        url = self.base_url.replace("https://", "wss://").replace("http://", "ws://")
        async with self._http().ws_connect(
            url + "/v1/events", headers=self._headers(), ssl=self._ssl, heartbeat=20.0,
            proxy=self._proxy,
        ) as ws:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    yield Event.model_validate_json(msg.data)


