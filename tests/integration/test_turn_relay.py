"""TURN over TLS (RFC 8656 §3.1) through the real coturn, with the cloud's credentials.

A browser whose network lets only HTTPS out reaches a meeting through a TURN server on
TLS 443. The loopback stack runs Debian's coturn (``turnserver``, :mod:`lab.turn`); the
cloud mints credentials in coturn's shared-secret scheme (``GET /v1/turn``,
:mod:`cloud.turn`). Here:

- an aiortc peer with ``iceTransportPolicy=relay`` and the ``GET /v1/turn`` answer as its
  ``iceServers`` joins a meeting with a direct aiortc peer: each decodes the other's VP8
  video; its selected local candidate is a relayed one (RFC 8445 §5.1.1.2) whose
  allocation runs over TLS to coturn, verified against the stack's CA; the node latched
  the leg on coturn's relayed address;
- coturn takes a fresh credential, refuses an expired one or one made with another
  secret (401, RFC 8489 §9.2.4), relays to the stack's block only (403 elsewhere, RFC
  8656 §12.2), and listens on TLS alone, its secret on no command line;
- the route: 200 with a credential for a device, 401 without a token, 404
  ``turn_unavailable`` when the cloud has no TURN server.

aioice (aiortc's ICE) opens a ``turns:`` connection with ``ssl=True``: asyncio's default
context, the system's trust store, full verification. The stack's CA is a development CA
in no system store, so the tests that relay give this process ``SSL_CERT_FILE`` = the
stack's CA (OpenSSL reads it when that default context loads its trust store): the
product code and aioice are untouched, verification is not weakened, and
``test_aioice_refuses_coturn_without_the_stack_ca`` shows it is really on.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import socket
import ssl
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from aioice import stun
from aioice.ice import CandidatePair
from aioice.turn import TurnClientTcpProtocol, TurnTransport, create_turn_endpoint
from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy
from aiortc.mediastreams import VideoStreamTrack

from client import Device
from cloud.app import make_app
from cloud.identity import Org, TokenSigner
from cloud.settings import CloudSettings
from cloud.state import CLOUD
from cloud.store import MemoryStore
from cloud.turn import expiry_of, turn_credentials
from lab.pki import ORG
from lab.stack import NodeSpec, Stack, running_stack
from lab.turn import TLS_PORT
from tests.integration.webrtc_peer import Peer, aiortc_peer
from tests.prereqs import require_tool
from tests.waiting import HANG_S, FakeClock, until, until_async
from wire.models import IceServers

pytestmark = pytest.mark.slow
#: the tests on the module's stack run on the module's event loop, where it runs
ON_THE_MODULE_STACK = pytest.mark.asyncio(loop_scope="module")


@asynccontextmanager
async def _stack_with_coturn(state_dir: Path) -> AsyncIterator[Stack]:
    """A stack with coturn (under CI=true a missing turnserver fails, never skips)."""
    require_tool("turnserver")
    async with running_stack([NodeSpec("node-a", "eu", 0)], state_dir=state_dir,
                             turn=True) as running:
        assert running.turn is not None, "the stack did not start coturn"
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One stack with coturn for the module's tests: each has its own devices, meeting and
    allocations, and none changes the cloud, coturn or the node."""
    async with _stack_with_coturn(tmp_path_factory.mktemp("turn-relay")) as running:
        yield running


@pytest.fixture
async def own_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """A stack with coturn for one test: what coturn holds must be its start-up alone (no
    relayed socket of another test's allocation)."""
    async with _stack_with_coturn(tmp_path) as running:
        yield running


@pytest.fixture
def trust_stack_ca(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice's default TLS context trusts the stack's CA (and nothing else) in this test."""
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", stack.ca_file)


async def _ice_servers(device: Device) -> IceServers:
    return await device.api._get("/v1/turn", IceServers)


async def _registered(stack: Stack, name: str) -> Device:
    device = Device(stack.api())
    await device.register(ORG, stack.enrollment_key, name)
    return device


def _secret(stack: Stack) -> bytes:
    assert stack.turn is not None
    return stack.turn.secret_file.read_text().strip().encode()


async def _allocate(stack: Stack, username: str, password: str,
                    tls: bool | ssl.SSLContext = True) -> TurnTransport:
    """A TURN allocation (RFC 8656 §7) over TLS with aioice, as aiortc makes one."""
    assert stack.turn is not None
    transport, _ = await create_turn_endpoint(
        asyncio.DatagramProtocol, (stack.turn.address, stack.turn.port), username, password,
        ssl=tls, transport="tcp")
    return transport


def _inner(transport: TurnTransport) -> TurnClientTcpProtocol:
    """aioice's connection to the TURN server under a relayed transport."""
    inner = vars(transport)["_TurnTransport__inner_protocol"]
    assert isinstance(inner, TurnClientTcpProtocol)
    return inner


# ----------------------------------------------------------------------- the relayed call


def _selected_pair(peer: Peer) -> CandidatePair:
    transceiver = peer.pc.getTransceivers()[0]
    connection = transceiver.sender.transport.transport._connection
    [pair] = connection._nominated.values()
    assert isinstance(pair, CandidatePair)
    return pair


@pytest.mark.usefixtures("loopback_host", "trust_stack_ca")
@ON_THE_MODULE_STACK
async def test_a_relay_only_peer_and_a_direct_one_decode_each_others_video(
        stack: Stack) -> None:
    """RFC 8656 §3.1 and RFC 8445 §5.1.1.2: a peer allowed only relayed candidates reaches
    the node through coturn over TLS and the meeting works both ways."""
    assert stack.turn is not None
    device = await _registered(stack, "relayed")
    servers = await _ice_servers(device)
    [server] = servers.ice_servers
    assert server.urls == [stack.turn.url]
    relayed = Peer(device, RTCConfiguration(
        iceServers=[RTCIceServer(server.urls, server.username,
                                 server.credential.get_secret_value())],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY))
    direct = await aiortc_peer(stack, "direct")
    try:
        meeting = f"relayed-{secrets.token_hex(4)}"
        await relayed.device.api.create_meeting(meeting_id=meeting)
        for peer in (relayed, direct):
            peer.pc.addTrack(VideoStreamTrack())
        await relayed.join(meeting)
        await direct.join(meeting)

        async def decoded() -> bool:
            return relayed.frames["video"] > 0 and direct.frames["video"] > 0

        await until_async(decoded, "video frames decoded on both sides", timeout_s=HANG_S)

        pair = _selected_pair(relayed)
        local = pair.local_candidate
        assert local.type == "relay" and local.host == stack.turn.address
        turn_link = pair.protocol.transport
        assert isinstance(turn_link, TurnTransport)
        over = _inner(turn_link).transport
        tls = over.get_extra_info("ssl_object")
        assert tls is not None and tls.version() in ("TLSv1.2", "TLSv1.3")
        assert ("IP Address", stack.turn.address) in tls.getpeercert()["subjectAltName"]
        assert over.get_extra_info("peername")[:2] == (stack.turn.address, stack.turn.port)
        assert _selected_pair(direct).local_candidate.type == "host"

        # the node latched the relayed peer's leg on coturn's relayed address
        node_log = stack.state_dir / "node-a.log"
        path = rf"latched on udp/\S+ from \('{re.escape(local.host)}', {local.port}\)"
        await until(lambda: re.search(path, node_log.read_text()) is not None,
                    f"node-a latched a leg on coturn's {local.host}:{local.port}")
    finally:
        await relayed.close()
        await direct.close()


# -------------------------------------------------------------------- coturn and its rules


@pytest.mark.usefixtures("trust_stack_ca")
@ON_THE_MODULE_STACK
async def test_coturn_takes_fresh_credentials_only(stack: Stack) -> None:
    """coturn recomputes the password from the username and refuses an expiry in the past
    or another secret's HMAC with 401 (RFC 8489 §9.2.4); the credential the cloud mints
    allocates."""
    assert stack.turn is not None
    device = await _registered(stack, "checker")
    try:
        [server] = (await _ice_servers(device)).ice_servers
        assert expiry_of(server.username) > time.time()
        transport = await _allocate(stack, server.username, server.credential.get_secret_value())
        assert transport.get_extra_info("sockname")[0] == stack.turn.address
        transport.close()

        assert device.registration is not None
        device_id = device.registration.device_id
        url = [stack.turn.url]
        # expired a minute ago, by coturn's own clock (far from any real-time margin)
        [expired] = turn_credentials(_secret(stack), device_id, time.time() - 61, 1.0,
                                     url).ice_servers
        [forged] = turn_credentials(b"not the shared secret", device_id, time.time(), 3600.0,
                                    url).ice_servers
        for refused in (expired, forged):
            with pytest.raises(stun.TransactionFailed) as caught:
                await _allocate(stack, refused.username, refused.credential.get_secret_value())
            assert caught.value.response.error_code == 401
    finally:
        await device.close()
        await device.api.close()


@pytest.mark.usefixtures("trust_stack_ca")
@ON_THE_MODULE_STACK
async def test_coturn_relays_to_the_stacks_block_only(stack: Stack) -> None:
    """RFC 8656 §12.2: coturn refuses a channel to a peer outside the stack's /24 with
    403 (loopback included: it is allowed back for the block alone), and grants one for
    the node."""
    assert stack.turn is not None
    device = await _registered(stack, "prober")
    try:
        [server] = (await _ice_servers(device)).ice_servers
        transport = await _allocate(stack, server.username, server.credential.get_secret_value())
        inner = _inner(transport)
        node = stack.nodes[0]["address"]
        await inner.channel_bind(0x4000, (node, 5004))
        for outside in ("127.0.0.1", "192.0.2.1"):
            with pytest.raises(stun.TransactionFailed) as caught:
                await inner.channel_bind(0x4001, (outside, 5004))
            assert caught.value.response.error_code == 403
        transport.close()
    finally:
        await device.close()
        await device.api.close()


@ON_THE_MODULE_STACK
async def test_aioice_refuses_coturn_without_the_stack_ca(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trust the relay tests give is the only change: without the stack's CA in its
    trust store aioice's TLS to coturn fails verification, with the right credential."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    assert stack.turn is not None
    [server] = turn_credentials(_secret(stack), "dev-x", time.time(), 60.0,
                                [stack.turn.url]).ice_servers
    with pytest.raises(ssl.SSLCertVerificationError):
        await _allocate(stack, server.username, server.credential.get_secret_value())


def _listening(pid: int) -> set[tuple[str, int]]:
    """(protocol, port) of every TCP socket ``pid`` listens on and every UDP socket it
    holds, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = set()
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if inode in inodes and (proto.startswith("udp") or state == "0A"):  # 0A: LISTEN
                found.add((proto.rstrip("6"), int(local.rsplit(":", 1)[1], 16)))
    return found


async def test_coturn_listens_on_tls_alone_and_keeps_its_secret_off_the_command_line(
        own_stack: Stack) -> None:
    """One TLS listener (443 when this process may bind it), no plain UDP/TCP/DTLS
    listener and no CLI port; the shared secret is in 0600 files, never in ``ps``; the
    stack's stack.json names coturn's URL and not the secret."""
    stack = own_stack
    turn = stack.turn
    assert turn is not None
    pid = stack.named["turn"].pid
    assert _listening(pid) == {("tcp", turn.port)}
    if os.geteuid() == 0:
        assert turn.port == TLS_PORT
    secret = _secret(stack).decode()
    assert secret not in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    for private in (turn.secret_file, turn.config_file, turn.key_file):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    described = (stack.state_dir / "stack.json").read_text()
    assert f'"url": "{turn.url}"' in described and secret not in described
    assert stack.describe()["turn"] == {"url": turn.url}
    with socket.create_connection((turn.address, turn.port), timeout=HANG_S):
        pass  # the TLS listener is where the URL says


# ------------------------------------------------------------------------------- the route

ORGS = {"acme": Org("acme", "acme-key", "acme-hybrid")}
SHARED = "north-wind-7"
URL = "turns:turn.example:443?transport=tcp"


async def _route(settings: CloudSettings, clock: FakeClock,
                 token: bool = True) -> tuple[int, dict[str, Any], str]:
    """``GET /v1/turn`` on an in-process cloud: status, body, Cache-Control."""
    server = TestServer(make_app(settings, MemoryStore(), ORGS, TokenSigner()))
    server.app[CLOUD].clock = clock
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(server.make_url("/v1/devices"), json={
                    "org": "acme", "enrollment_key": "acme-key", "name": "page"}) as answer:
                registered = await answer.json()
            headers = {"Authorization": f"Bearer {registered['token']}"} if token else {}
            async with http.get(server.make_url("/v1/turn"), headers=headers) as answer:
                body = await answer.json()
                body["device_id"] = registered["device_id"]
                return answer.status, body, answer.headers.get("Cache-Control", "")
    finally:
        await server.close()


async def test_the_route_gives_a_device_a_credential(
        caplog: pytest.LogCaptureFixture) -> None:
    """200: the configured URL, ``<expiry>:<device id>`` with the expiry one TTL after the
    cloud's clock, the password as coturn recomputes it, never cached nor logged."""
    settings = CloudSettings(turn_secret=SHARED, turn_url=(URL,), turn_ttl_s=600.0)
    with caplog.at_level(logging.DEBUG):
        status, body, cache = await _route(settings, FakeClock(1_700_000_000.5))
    assert status == 200 and cache == "no-store"
    [server] = body["ice_servers"]
    assert body["ttl_s"] == 600.0 and server["urls"] == [URL]
    assert server["username"] == f"1700000600:{body['device_id']}"
    digest = hmac.new(SHARED.encode(), server["username"].encode(), hashlib.sha1).digest()
    assert server["credential"] == base64.b64encode(digest).decode()
    assert SHARED not in caplog.text and server["credential"] not in caplog.text


async def test_the_route_needs_a_device_token() -> None:
    """401 ``unauthorized`` without a bearer token: credentials go to devices only."""
    settings = CloudSettings(turn_secret=SHARED, turn_url=(URL,))
    status, body, _ = await _route(settings, FakeClock(1_700_000_000.0), token=False)
    assert (status, body["error"]) == (401, "unauthorized")


async def test_the_route_without_turn_is_404_turn_unavailable() -> None:
    """A cloud with no TURN server says so: 404 ``turn_unavailable``, not a 500 or an
    empty list a page would try."""
    status, body, _ = await _route(CloudSettings(), FakeClock(1_700_000_000.0))
    assert (status, body["error"]) == (404, "turn_unavailable")
    assert body["detail"] == "this cloud has no TURN server configured"
