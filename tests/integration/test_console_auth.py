"""The operator credential on every console route: forged, ended, expired and borrowed
credentials are refused with 401 and counted; the real cookie and the real token get in.

Defects pinned down: the console's cookie was derived from the operator token alone, so
``POST /logout`` only asked the browser to forget it: the same cookie replayed after logging
out (or copied at any time) was accepted for good, on every replica, and never expired; a
bearer header that is not UTF-8 answered 500 (the compare encoded it strictly); refusals
were not counted anywhere. The suite tried only no credential and the right one, so a check
that took any non-empty cookie, or ``Authorization: Bearer`` with any value, passed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from cloud.app import make_app
from cloud.console import COOKIE, SESSION_S
from cloud.console import routes as console_routes
from cloud.identity import Org, TokenSigner
from cloud.settings import CloudSettings
from cloud.state import CLOUD
from cloud.store import MemoryStore
from cloud.store_factory import open_store
from tests.integration.redis_server import redis_server
from tests.waiting import FakeClock

OPERATOR = secrets.token_urlsafe(32)
NODE_SECRET = secrets.token_urlsafe(32)
ORGS = {"acme": Org("acme", "acme-key", secrets.token_urlsafe(32))}
SETTINGS = CloudSettings(node_secret=NODE_SECRET, operator_token=OPERATOR)

# Every page and JSON route of the console but the login and logout forms: the routes a
# newer console view adds are covered without a change here.
GUARDED = sorted(re.sub(r"\{[^}]*\}", "x", r.path) for r in console_routes
                 if isinstance(r, web.RouteDef) and r.method == "GET")



@dataclass
class Console:
    server: TestServer
    http: aiohttp.ClientSession
    clock: FakeClock

    async def status(self, path: str, cookie: str | None = None,
                     authorization: str | None = None) -> tuple[int, str]:
        """The status of GET ``path`` and the start of its body (an event stream is left
        after its headers)."""
        headers = {}
        if cookie is not None:
            headers["Cookie"] = f"{COOKIE}={cookie}"
        if authorization is not None:
            headers["Authorization"] = authorization
        async with self.http.get(self.server.make_url(path), headers=headers,
                                 allow_redirects=False) as response:
            body = "" if response.content_type == "text/event-stream" else \
                await response.text()
            return response.status, body

    async def login(self, token: str = OPERATOR) -> tuple[int, str]:
        """The status of the login form and the cookie it set ("" for none)."""
        async with self.http.post(self.server.make_url("/login"), data={"token": token},
                                  allow_redirects=False) as response:
            morsel = response.cookies.get(COOKIE)
            return response.status, morsel.value if morsel is not None else ""

    async def logout(self, cookie: str) -> int:
        async with self.http.post(self.server.make_url("/logout"), data={},
                                  headers={"Cookie": f"{COOKIE}={cookie}"},
                                  allow_redirects=False) as response:
            return response.status

    async def device_token(self) -> str:
        async with self.http.post(self.server.make_url("/v1/devices"), json={
                "org": "acme", "enrollment_key": "acme-key", "name": "d"}) as response:
            assert response.status == 201
            return str((await response.json())["token"])

    async def refusals(self) -> dict[str, float]:
        """``pinhole_operator_refusals_total`` by reason, as ``/metrics`` shows it."""
        async with self.http.get(self.server.make_url("/metrics")) as response:
            text = await response.text()
        found: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("pinhole_operator_refusals_total{"):
                labels, _, value = line.partition("} ")
                found[labels.split('reason="')[1].rstrip('"')] = float(value)
        return found


@contextlib.asynccontextmanager
async def _console(store_url: str = "") -> AsyncIterator[Console]:
    clock = FakeClock(time.time())
    store = open_store(store_url) if store_url else MemoryStore(clock)
    app = make_app(SETTINGS, store, ORGS, TokenSigner())
    app[CLOUD].clock = clock
    server = TestServer(app)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield Console(server, http, clock)
    finally:
        await server.close()


@pytest.fixture
async def console() -> AsyncIterator[Console]:
    async with _console() as c:
        yield c


def _refused(path: str, status: int, body: str) -> bool:
    if status != 401:
        return False
    if path == "/":
        return "<form" in body and "Pinhole operator console" in body  # the login page only
    return bool(json.loads(body)["error"] == "operator_required")


def _one_changed(text: str) -> str:
    """``text`` of the same length, its middle character changed for another of its
    alphabet (hex, base64url): well-shaped, only the secret differs."""
    i = len(text) // 2
    return text[:i] + ("0" if text[i] != "0" else "1") + text[i + 1:]


@pytest.mark.parametrize("path", GUARDED)
async def test_the_real_cookie_and_token_get_in(console: Console, path: str) -> None:
    status, cookie = await console.login()
    assert status == 303 and cookie
    assert (await console.status(path, cookie=cookie))[0] == 200
    assert (await console.status(path, authorization=f"Bearer {OPERATOR}"))[0] == 200
    # RFC 7235 §2.1: the auth scheme is a case-insensitive token
    assert (await console.status(path, authorization=f"bearer {OPERATOR}"))[0] == 200
    assert await console.refusals() == {}


@pytest.mark.parametrize("path", GUARDED)
async def test_forged_and_borrowed_credentials_are_refused_and_counted(
        console: Console, path: str) -> None:
    """Guards: a check that takes any non-empty cookie, or any Bearer value,
    fails here; so does one that compares a prefix or ignores the signature."""
    _, real = await console.login()
    session_id, _, mac = real.partition(".")
    device = await console.device_token()
    cookies = {
        "a word": "forged",
        "the real cookie, one character changed": _one_changed(real),
        "another session id under the real signature": f"{secrets.token_urlsafe(32)}.{mac}",
        "the real session id, its signature cut": f"{session_id}.{mac[:-1]}",
        "random, of the real shape": f"{secrets.token_urlsafe(32)}.{secrets.token_hex(32)}",
        "the operator token itself": OPERATOR,
    }
    bearers = {
        "a wrong token": "Bearer wrong",
        "the token, one character changed": f"Bearer {_one_changed(OPERATOR)}",
        "the token and one more character": f"Bearer {OPERATOR}x",
        "the token less its last character": f"Bearer {OPERATOR[:-1]}",
        "the node secret": f"Bearer {NODE_SECRET}",
        "the hybrid node's org secret": f"Bearer {ORGS['acme'].hybrid_node_secret}",
        "a device token": f"Bearer {device}",
        "the enrollment key": "Bearer acme-key",
        "the session cookie": f"Bearer {real}",
        "the token, another scheme": f"Basic {OPERATOR}",
    }
    for what, cookie in cookies.items():
        status, body = await console.status(path, cookie=cookie)
        assert _refused(path, status, body), (what, status, body[:200])
    for what, authorization in bearers.items():
        status, body = await console.status(path, authorization=authorization)
        assert _refused(path, status, body), (what, status, body[:200])
    assert await console.refusals() == {"bad_cookie": len(cookies),
                                        "bad_token": len(bearers)}
    assert (await console.status(path, cookie=real))[0] == 200  # still in, all along


@pytest.mark.parametrize("path", GUARDED)
async def test_a_cookie_replayed_after_logout_is_refused(console: Console, path: str) -> None:
    """Before: logging out deleted the cookie in the browser only; the value stayed good."""
    _, ended = await console.login()
    _, other = await console.login()
    assert ended != other  # each login is its own session
    assert (await console.status(path, cookie=ended))[0] == 200
    assert await console.logout(ended) == 303
    status, body = await console.status(path, cookie=ended)
    assert _refused(path, status, body), (status, body[:200])
    assert (await console.status(path, cookie=other))[0] == 200  # one logout ends one login
    assert await console.refusals() == {"ended_session": 1}


@pytest.mark.parametrize("path", GUARDED)
async def test_a_session_expires(console: Console, path: str) -> None:
    """Before: a console cookie never expired. A login lasts ``SESSION_S`` of the cloud's
    clock (a fake one here), and the browser is told the same."""
    async with console.http.post(console.server.make_url("/login"), data={"token": OPERATOR},
                                 allow_redirects=False) as response:
        morsel = response.cookies[COOKIE]
        assert int(morsel["max-age"]) == SESSION_S
        assert morsel["httponly"] and morsel["secure"] and morsel["samesite"] == "Strict"
        cookie = morsel.value
    console.clock.now += SESSION_S - 1
    assert (await console.status(path, cookie=cookie))[0] == 200
    console.clock.now += 1
    status, body = await console.status(path, cookie=cookie)
    assert _refused(path, status, body), (status, body[:200])
    assert await console.refusals() == {"expired_session": 1}
    _, fresh = await console.login()  # a new login works at the new time
    assert (await console.status(path, cookie=fresh))[0] == 200


@pytest.mark.parametrize("end", ["logout", "expiry"])
async def test_an_open_event_stream_ends_with_its_login(console: Console, end: str) -> None:
    """Before: a stream opened with a cookie went on after a logout, and for ever."""
    _, cookie = await console.login()
    async with console.http.get(console.server.make_url("/v1/console/events"),
                                headers={"Cookie": f"{COOKIE}={cookie}"}) as response:
        assert response.status == 200
        assert await response.content.readline() == b"event: state\n"
        if end == "logout":
            assert await console.logout(cookie) == 303
        else:
            console.clock.now += SESSION_S
        async with asyncio.timeout(30):  # the stream checks the login at its next push
            rest = await response.content.read()
        assert rest.endswith(b"\n\n")  # it ended after a whole event


async def test_wrong_logins_are_refused_and_counted(console: Console) -> None:
    for token in ("wrong", _one_changed(OPERATOR), NODE_SECRET, OPERATOR + "x", ""):
        status, cookie = await console.login(token)
        assert status == 401 and cookie == "", token
    assert await console.refusals() == {"bad_login": 5}
    status, cookie = await console.login(f"  {OPERATOR}\n")  # pasted with spaces around
    assert status == 303 and cookie


async def test_a_logout_without_a_session_changes_nothing(console: Console) -> None:
    _, cookie = await console.login()
    for junk in ("forged", _one_changed(cookie), ""):
        assert await console.logout(junk) == 303
    assert (await console.status("/v1/console/state", cookie=cookie))[0] == 200


@pytest.mark.parametrize("path", GUARDED)
async def test_a_bearer_header_that_is_not_utf8_is_401(console: Console, path: str) -> None:
    """Before: 500 (UnicodeEncodeError): aiohttp decodes header bytes with
    surrogateescape and the compare encoded them strictly."""
    server = console.server
    reader, stream = await asyncio.open_connection(server.host, server.port)
    stream.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
                 + b"Authorization: Bearer \xff\xfe" + OPERATOR.encode() + b"\r\n"
                 + b"Cookie: " + COOKIE.encode() + b"=\xff\xfe\r\n\r\n")
    status_line = await reader.readline()  # an event stream that let it in never ends
    stream.close()
    assert status_line.startswith(b"HTTP/1.1 401"), status_line


@pytest.mark.redis
async def test_a_logout_on_one_replica_ends_the_session_on_every_replica(
        tmp_path: Path) -> None:
    """Two replicas over one Redis behind a balancer: a login made on one is good on the
    other, and a logout on either ends it on both."""
    async with redis_server(tmp_path) as url, _console(url) as a, _console(url) as b:
        _, cookie = await a.login()
        redis = aioredis.from_url(url, decode_responses=True)
        [key] = await redis.keys("pinhole:console-session:*")
        assert cookie.partition(".")[0] not in key  # Redis holds a hash, not the cookie
        assert SESSION_S - 60 < await redis.ttl(key) <= SESSION_S  # Redis lets it go too
        assert (await b.status("/v1/console/state", cookie=cookie))[0] == 200
        assert await b.logout(cookie) == 303
        assert await redis.keys("pinhole:console-session:*") == []
        await redis.aclose()
        assert (await a.status("/v1/console/state", cookie=cookie))[0] == 401
        assert (await b.status("/v1/console/state", cookie=cookie))[0] == 401
        assert await a.refusals() == {"ended_session": 1}
