"""Hostile bodies and headers on every route of the cloud API: always a 4xx JSON error.

Defects pinned down (each answered 500 with a traceback in the log before):
deep nesting on the unauthenticated ``POST /v1/devices`` (RecursionError in
the body reader), a lone surrogate in ``enrollment_key`` (UnicodeEncodeError
in the secret compare), a node secret that is not UTF-8, and ``text/plain``
bodies taken as JSON (now 415). The property test walks the OpenAPI
document's every route and method with junk bodies, media types and
credentials.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.app import make_app
from cloud.identity import Org, TokenSigner
from cloud.openapi import document
from cloud.settings import CloudSettings
from cloud.store import MemoryStore

ORGS = {"acme": Org("acme", "acme-key", "acme-hybrid")}


class Client:
    def __init__(self, server: TestServer, http: aiohttp.ClientSession) -> None:
        self.server, self.http = server, http

    async def send(self, method: str, path: str, raw: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.http.request(method, self.server.make_url(path), data=raw,
                                     headers=headers or {}) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    async def token(self) -> str:
        status, body = await self.send(
            "POST", "/v1/devices",
            json.dumps({"org": "acme", "enrollment_key": "acme-key", "name": "d"}).encode(),
            {"Content-Type": "application/json"})
        assert status == 201, body
        return str(body["token"])


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    app = make_app(CloudSettings(node_secret="node-secret"), MemoryStore(), ORGS, TokenSigner())
    server = TestServer(app)
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield Client(server, http)
    await server.close()


JSON_HEADERS = {"Content-Type": "application/json"}


# The operator console's pages answer a browser with HTML (the login form); anything that is
# not the browser's form gets the JSON error.
CONSOLE_PAGES = frozenset({"/", "/login", "/logout"})


def _is_error(status: int, body: Any, code: str | None = None) -> bool:
    shape = (isinstance(body, dict) and set(body) == {"error", "detail"}
             and isinstance(body["error"], str) and isinstance(body["detail"], str))
    return 400 <= status < 500 and shape and (code is None or body["error"] == code)


@pytest.mark.parametrize("raw", [b"[" * 1000, b'{"a":' * 5000, b"[" * 100_000])
async def test_deep_nesting_on_registration_is_400(client: Client, raw: bytes,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Before: ``[`` × 1000 and ``{"a":`` × 5000 on POST /v1/devices answered 500."""
    status, body = await client.send("POST", "/v1/devices", raw, JSON_HEADERS)
    assert _is_error(status, body, "too_deep"), (status, body)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_lone_surrogate_in_the_enrollment_key_is_400(client: Client) -> None:
    """Before: ``"\\ud800"`` in enrollment_key answered 500 (UnicodeEncodeError)."""
    raw = b'{"org": "acme", "enrollment_key": "\\ud800", "name": "d"}'
    status, body = await client.send("POST", "/v1/devices", raw, JSON_HEADERS)
    assert _is_error(status, body, "invalid_unicode"), (status, body)


async def test_a_node_secret_that_is_not_utf8_is_401(client: Client) -> None:
    """aiohttp decodes header bytes with surrogateescape; the compare must not raise."""
    body = json.dumps({"kind": "cloud", "region": "r", "address": "192.0.2.1",
                       "endpoints": [{"rung": "udp/5004", "transport": "udp", "port": 5004}]})
    reader, stream = await asyncio.open_connection(client.server.host, client.server.port)
    request = (f"POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n").encode()
    stream.write(request + b"Authorization: Bearer \xff\xfe\r\n\r\n" + body.encode())
    answer = await reader.read()
    stream.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401"), head
    assert _is_error(401, json.loads(payload), "unauthorized")


@pytest.mark.parametrize("media_type", ["text/plain", "application/x-www-form-urlencoded",
                                        "application/json; charset=latin-1", ""])
async def test_bodies_that_are_not_json_media_are_415(client: Client, media_type: str) -> None:
    """Before: ``text/plain`` bodies were accepted as JSON. The API speaks application/json."""
    raw = json.dumps({"org": "acme", "enrollment_key": "acme-key", "name": "d"}).encode()
    headers = {"Content-Type": media_type} if media_type else {}
    if not media_type:
        headers["Content-Type"] = ""
    status, body = await client.send("POST", "/v1/devices", raw, headers)
    assert _is_error(status, body, "unsupported_media_type"), (status, body)
    ok = await client.send("POST", "/v1/devices", raw,
                           {"Content-Type": "application/json; charset=utf-8"})
    assert ok[0] == 201


async def test_an_oversized_body_is_413(client: Client) -> None:
    raw = b'{"org": "' + b"a" * (300 * 1024) + b'"}'
    status, body = await client.send("POST", "/v1/devices", raw, JSON_HEADERS)
    assert _is_error(status, body, "too_large"), (status, body)


# ----------------------------------------------------------------------------- property test

JUNK_BODIES = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(1, 3000).map(lambda n: b"[" * n),
    st.integers(1, 3000).map(lambda n: b'{"a":' * n),
    st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=10),
                 lambda i: st.lists(i, max_size=3) | st.dictionaries(st.text(max_size=5), i,
                                                                     max_size=3),
                 max_leaves=10).map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b'{"enrollment_key": "\\ud800"}', b'"\\udfff"', b"NaN", b"", b"null",
                     b'{"results": [{"rtt_ms": 1e999}]}', b'{"id": "\\u0000"}']),
)
MEDIA_TYPES = st.sampled_from(["application/json", "text/plain", "", "application/json; a=b",
                               "multipart/form-data; boundary=x", "application/json; charset=x"])
AUTH = st.sampled_from(["", "Bearer ", "Bearer x.y", "Basic abc", "Bearer node-secret",
                        "Bearer acme-hybrid", "bearer a.b.c", "Bearer ..", "TOKEN"])


def _routes() -> list[tuple[str, str]]:
    return [(method.upper(), path) for path, methods in sorted(document()["paths"].items())
            for method in sorted(methods)]


Example = tuple[bytes, str, str]


def _examples(count: int) -> list[Example]:
    found: list[Example] = []

    @settings(max_examples=count, deadline=None, database=None)
    @given(JUNK_BODIES, MEDIA_TYPES, AUTH | st.just("TOKEN"))
    def collect(raw: bytes, media_type: str, auth: str) -> None:
        found.append((raw, media_type, auth))

    collect()
    return found


@pytest.mark.parametrize(("method", "template"), _routes())
async def test_junk_on_every_route_is_never_a_5xx(client: Client, method: str,
                                                  template: str) -> None:
    """Every route and method of the OpenAPI document, junk bodies/types/credentials:
    never a 5xx, and every error is the JSON ``{"error", "detail"}`` shape."""
    token = await client.token()
    device_id = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==="))["sub"]
    _, meeting = await client.send("POST", "/v1/meetings", b"{}", {
        "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    path = (template.replace("{device_id}", device_id).replace("{meeting_id}", meeting["id"])
            .replace("{participant_id}", "p-1").replace("{node_id}", "node-1"))
    for raw, media_type, auth in _examples(60):  # 60 x 17 operations: 1,020 requests
        headers = {"Content-Type": media_type}
        if auth:
            headers["Authorization"] = "Bearer " + token if auth == "TOKEN" else auth
        status, body = await client.send(method, path, raw, headers)
        assert status < 500, (method, path, raw[:80], status, body)
        if status >= 400 and path in CONSOLE_PAGES and isinstance(body, str):
            assert body.startswith("<!doctype html>"), body  # a browser's page: the login form
        elif status >= 400:
            assert _is_error(status, body), (method, path, raw[:80], status, body)
