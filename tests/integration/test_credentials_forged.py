"""Forged against real, for every credential the cloud takes besides the operator's.

docs/design.md "Cloud API": devices authenticate with the bearer token from registration,
registration with the organisation's enrollment key, nodes with their node secret (a hybrid
node with its organisation's). The suite tried garbage, "a.b" and a revoked token; these
pin down the credentials an attacker can come closer with: a token signed by another key, a
real token's claims edited under its signature, a signature with one character changed, an
expired token (a fake clock), and each of the cloud's other secrets in the wrong place. Each
is refused with 401 on every route of its kind; the real one is let in there.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from cloud.app import make_app
from cloud.identity import Claims, Org, TokenSigner
from cloud.openapi import OPERATIONS
from cloud.settings import CloudSettings
from cloud.state import CLOUD
from cloud.store import MemoryStore
from tests.waiting import FakeClock

NODE_SECRET = secrets.token_urlsafe(32)
OPERATOR = secrets.token_urlsafe(32)
ORGS = {"acme": Org("acme", "acme-key-" + secrets.token_hex(8), secrets.token_urlsafe(32)),
        "globex": Org("globex", "globex-key-" + secrets.token_hex(8), secrets.token_urlsafe(32))}
ACME, GLOBEX = ORGS["acme"], ORGS["globex"]
SETTINGS = CloudSettings(node_secret=NODE_SECRET, operator_token=OPERATOR)
DEVICE_ROUTES = sorted((op.method.upper(), op.path) for op in OPERATIONS
                       if op.auth == "device" and not op.websocket)
NODE_BODY = {"region": "r", "address": "192.0.2.7",
             "endpoints": [{"rung": "udp/5004", "transport": "udp", "port": 5004}]}



@dataclass
class Cloud:
    server: TestServer
    http: aiohttp.ClientSession
    clock: FakeClock
    signer: TokenSigner

    async def call(self, method: str, path: str, token: str | None,
                   body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with self.http.request(method, self.server.make_url(path), headers=headers,
                                     json=body) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None

    async def register(self, org: Org = ACME) -> dict[str, Any]:
        status, body = await self.call("POST", "/v1/devices", None, {
            "org": org.id, "enrollment_key": org.enrollment_key, "name": "d"})
        assert status == 201, body
        return dict(body)

    async def node(self, secret: str, kind: str = "cloud", org: str | None = None,
                   node_id: str | None = None) -> tuple[int, Any]:
        body: dict[str, Any] = {**NODE_BODY, "kind": kind}
        if org is not None:
            body["org"] = org
        if node_id is not None:
            body["id"] = node_id
        return await self.call("POST", "/v1/nodes", secret, body)

    async def websocket(self, path: str, token: str) -> int:
        """The handshake's status: 101 when the WebSocket opened."""
        try:
            ws = await self.http.ws_connect(self.server.make_url(path),
                                            headers={"Authorization": f"Bearer {token}"})
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        await ws.close()
        return 101


@pytest.fixture
async def cloud() -> AsyncIterator[Cloud]:
    clock = FakeClock(time.time())
    signer = TokenSigner()
    app = make_app(SETTINGS, MemoryStore(clock), ORGS, signer)
    app[CLOUD].clock = clock
    server = TestServer(app)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield Cloud(server, http, clock, signer)
    finally:
        await server.close()


def _changed(text: str, i: int) -> str:
    """``text`` with the character at ``i`` changed for another of the base64url alphabet."""
    return text[:i] + ("0" if text[i] != "0" else "1") + text[i + 1:]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, Any]:
    body = token.split(".")[0]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return claims


def _edited(token: str, **changes: Any) -> str:
    """The real token's signature over claims changed after signing."""
    claims = {**_claims(token), **changes}
    return _b64(json.dumps(claims, separators=(",", ":")).encode()) + "." + token.split(".")[1]


def _forged_device_tokens(real: str, other_org_token: str) -> dict[str, str]:
    claims = _claims(real)
    body, signature = real.split(".")
    stranger = TokenSigner()  # another key: the cloud's own is not known outside
    return {
        "the same claims signed by another key": stranger.issue(Claims(
            claims["sub"], claims["org"], claims["prf"], claims["gen"], claims["exp"])),
        "the org changed under the signature": _edited(real, org="globex"),
        "the expiry pushed back under the signature": _edited(real, exp=claims["exp"] + 1e6),
        "another device under the signature": _edited(real, sub="dev-someone"),
        "the signature, one character changed": f"{body}.{_changed(signature, 20)}",
        "the claims, one character changed": f"{_changed(body, 10)}.{signature}",
        "the claims with another token's signature":
            f"{body}.{other_org_token.split('.')[1]}",
        "the signature alone": signature,
        "the node secret": NODE_SECRET,
        "the operator token": OPERATOR,
        "the hybrid node's org secret": ACME.hybrid_node_secret,
        "the enrollment key": ACME.enrollment_key,
    }


def _path(template: str, device_id: str, meeting_id: str) -> str:
    return (template.replace("{device_id}", device_id).replace("{meeting_id}", meeting_id)
            .replace("{participant_id}", "p-1"))


# ----------------------------------------------------------------------------- device tokens


@pytest.mark.parametrize(("method", "template"), DEVICE_ROUTES)
async def test_forged_device_tokens_are_refused_and_the_real_one_is_not(
        cloud: Cloud, method: str, template: str) -> None:
    device, other = await cloud.register(), await cloud.register(GLOBEX)
    real = device["token"]
    _, meeting = await cloud.call("POST", "/v1/meetings", real, {})
    path = _path(template, device["device_id"], meeting["id"])
    for what, token in _forged_device_tokens(real, other["token"]).items():
        status, body = await cloud.call(method, path, token, {})
        assert status == 401 and body["error"] == "unauthorized", (what, status, body)
    status, body = await cloud.call(method, path, real, {})
    assert status != 401, body  # in (a 4xx of its own for this empty body is fine)


@pytest.mark.parametrize(("method", "template"), DEVICE_ROUTES)
async def test_an_expired_device_token_is_refused(cloud: Cloud, method: str,
                                                  template: str) -> None:
    device = await cloud.register()
    _, meeting = await cloud.call("POST", "/v1/meetings", device["token"], {})
    path = _path(template, device["device_id"], meeting["id"])
    cloud.clock.now += SETTINGS.token_ttl_s - 1
    assert (await cloud.call(method, path, device["token"], {}))[0] != 401
    cloud.clock.now += 1
    status, body = await cloud.call(method, path, device["token"], {})
    assert status == 401 and "expired" in body["detail"], body


async def test_the_events_websocket_takes_the_real_device_token_only(cloud: Cloud) -> None:
    device, other = await cloud.register(), await cloud.register(GLOBEX)
    for what, token in _forged_device_tokens(device["token"], other["token"]).items():
        assert await cloud.websocket("/v1/events", token) == 401, what
    assert await cloud.websocket("/v1/events", device["token"]) == 101
    cloud.clock.now += SETTINGS.token_ttl_s
    assert await cloud.websocket("/v1/events", device["token"]) == 401  # expired


# ----------------------------------------------------------------------------- node secrets


def _near_misses(secret: str) -> dict[str, str]:
    return {
        "one character changed": _changed(secret, len(secret) // 2),
        "the last character changed": _changed(secret, len(secret) - 1),
        "one character more": secret + "x",
        "one character less": secret[:-1],
        "a wrong secret": "wrong",
    }


async def test_forged_node_secrets_are_refused_and_the_real_one_is_not(cloud: Cloud) -> None:
    device = await cloud.register()
    borrowed = {"the acme hybrid secret": ACME.hybrid_node_secret,
                "the operator token": OPERATOR, "a device token": device["token"],
                "the enrollment key": ACME.enrollment_key}
    for what, secret in {**_near_misses(NODE_SECRET), **borrowed}.items():
        status, body = await cloud.node(secret)
        assert status == 401 and body["error"] == "unauthorized", (what, status, body)
    status, body = await cloud.node(NODE_SECRET, node_id="node-1")
    assert status == 201, body
    control = body["control_path"]
    for what, secret in {**_near_misses(NODE_SECRET), **borrowed}.items():
        assert await cloud.websocket(control, secret) == 401, what
    assert await cloud.websocket(control, NODE_SECRET) == 101


async def test_forged_hybrid_secrets_are_refused_and_the_real_one_is_not(cloud: Cloud) -> None:
    """A hybrid node's secret binds it to its organisation (docs/design.md "Cloud API":
    registration)."""
    device = await cloud.register()
    borrowed = {"the cloud nodes' secret": NODE_SECRET,
                "the other org's hybrid secret": GLOBEX.hybrid_node_secret,
                "the operator token": OPERATOR, "a device token": device["token"],
                "the org's enrollment key": ACME.enrollment_key}
    for what, secret in {**_near_misses(ACME.hybrid_node_secret), **borrowed}.items():
        status, body = await cloud.node(secret, "hybrid", "acme")
        assert status == 401 and body["error"] == "unauthorized", (what, status, body)
    # the hybrid secret is no cloud node's secret, nor an unknown org's
    assert (await cloud.node(ACME.hybrid_node_secret))[0] == 401
    assert (await cloud.node(ACME.hybrid_node_secret, "hybrid", "initech"))[0] == 401
    status, body = await cloud.node(ACME.hybrid_node_secret, "hybrid", "acme",
                                    node_id="hyb-acme")
    assert status == 201, body
    control = body["control_path"]
    for what, secret in {**_near_misses(ACME.hybrid_node_secret), **borrowed}.items():
        assert await cloud.websocket(control, secret) == 401, what
    assert await cloud.websocket(control, ACME.hybrid_node_secret) == 101


# ----------------------------------------------------------------------------- enrollment


async def test_forged_enrollment_keys_are_refused_and_the_real_one_is_not(
        cloud: Cloud) -> None:
    borrowed = {"the other org's key": GLOBEX.enrollment_key, "the node secret": NODE_SECRET,
                "the org's hybrid secret": ACME.hybrid_node_secret, "the operator token": OPERATOR}
    for what, key in {**_near_misses(ACME.enrollment_key), **borrowed}.items():
        status, body = await cloud.call("POST", "/v1/devices", None, {
            "org": "acme", "enrollment_key": key, "name": "d"})
        assert status == 401 and body["error"] == "unauthorized", (what, status, body)
    assert (await cloud.register())["org"] == "acme"
