"""Signaling and media through a real HTTP proxy (Debian's tinyproxy, Basic auth).

Seed: the app sends "the signaling and media through the HTTP proxy", which
must allow CONNECT to port 443. Media takes the http-proxy rung: CONNECT
node:443, TLS (the node's certificate checked against the node list), RFC 4571
framing inside.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from client.api import CloudApi
from client.device import Device
from client.media import MediaError
from client.proxy import ProxyConfig
from lab.stack import ORG, NodeSpec, Stack, running_stack
from tests.prereqs import require_tool
from wire.models import Endpoint
from wire.tls import client_context

pytestmark = pytest.mark.interop


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def tinyproxy(workdir: Path, user: str, password: str) -> AsyncIterator[tuple[int, Path]]:
    binary = require_tool("tinyproxy")
    port = _free_port()
    conf, log = workdir / "tinyproxy.conf", workdir / "tinyproxy.log"
    conf.write_text(f"Port {port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\n"
                    f"ConnectPort 443\nBasicAuth {user} {password}\nLogLevel Connect\n"
                    "MaxClients 50\n")
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(binary, "-d", "-c", str(conf),
                                                    stdout=out, stderr=out)
    try:
        async with asyncio.timeout(10):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        yield port, log
    finally:
        proc.terminate()
        await proc.wait()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack([NodeSpec("node-a", "eu", 0)], state_dir=tmp_path / "s") as s:
        yield s


async def test_signaling_and_media_cross_tinyproxy_with_basic_auth(
    stack: Stack, tmp_path: Path
) -> None:
    async with tinyproxy(tmp_path, "pinhole", "s3cret") as (port, log):
        proxy = ProxyConfig("127.0.0.1", port, "pinhole", "s3cret")
        api = CloudApi(stack.cloud_url, client_context(stack.ca_file), proxy=proxy.url)
        alice = Device(api, proxy=proxy)
        await alice.register(ORG, stack.enrollment_key, "alice")  # HTTPS through the proxy
        await alice.discover()
        meeting = (await api.create_meeting()).id
        joined = await alice.join(meeting)
        tls = next(e for e in joined.node.endpoints if e.rung == "tls/443")
        only_proxy = joined.model_copy(update={"plan": [
            Endpoint(rung="http-proxy", transport="http-proxy", port=tls.port)]})
        session = await alice.connect(only_proxy)
        assert session.rung == "http-proxy"

        bob = Device(stack.api())
        await bob.register(ORG, stack.enrollment_key, "bob")
        await bob.discover()
        other = await bob.connect(await bob.join(meeting))
        for i in range(10):
            session.send_audio(i.to_bytes(2, "big") + bytes(158))
            other.send_audio(i.to_bytes(2, "big") + bytes(158))
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        assert session.counters.packets_received == 10
        assert other.counters.packets_received == 10
        text = log.read_text()
        cloud_host = stack.cloud_url.split("//")[1]
        assert f"CONNECT {cloud_host}" in text  # signaling crossed the proxy
        assert f"CONNECT {joined.node.address}:{tls.port}" in text  # and media did

        # a wrong password is a clear error, not a hang
        wrong = Device(api, proxy=ProxyConfig("127.0.0.1", port, "pinhole", "nope"))
        with pytest.raises(MediaError, match="proxy authentication failed"):
            await wrong.connect(only_proxy)
        for s in (session, other):
            s.close()
        await api.close()
        await bob.api.close()


@asynccontextmanager
async def squid_digest(workdir: Path, user: str, password: str) -> AsyncIterator[int]:
    """Debian's squid with Digest authentication (digest_file_auth), CONNECT to 443 only."""
    binary = require_tool("squid")
    helper = Path("/usr/lib/squid/digest_file_auth")
    if not helper.exists():
        require_tool("digest_file_auth")  # fails under CI with a clear reason
    port = _free_port()
    workdir.chmod(0o777)  # squid drops to its own user for logs
    (workdir / "passwd").write_text(f"{user}:{password}\n")
    (workdir / "passwd").chmod(0o644)
    conf = workdir / "squid.conf"
    conf.write_text(f"""http_port 127.0.0.1:{port}
auth_param digest program {helper} {workdir / "passwd"}
auth_param digest realm pinhole
acl authed proxy_auth REQUIRED
acl SSL_ports port 443
acl CONNECT method CONNECT
http_access deny CONNECT !SSL_ports
http_access allow authed
http_access deny all
cache deny all
pid_filename {workdir / "squid.pid"}
access_log {workdir / "access.log"}
cache_log {workdir / "cache.log"}
coredump_dir {workdir}
shutdown_lifetime 1 seconds
""")
    proc = await asyncio.create_subprocess_exec(binary, "-N", "-f", str(conf),
                                                stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        async with asyncio.timeout(20):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        await proc.wait()


async def test_media_crosses_squid_with_digest_auth(stack: Stack) -> None:
    """RFC 7616 Digest answered to squid's challenge; media on the http-proxy rung."""
    # squid runs as its own user: its files live where that user can reach them
    with tempfile.TemporaryDirectory(prefix="pinhole-squid-") as tmp:
        await _squid_call(stack, Path(tmp))


async def _squid_call(stack: Stack, workdir: Path) -> None:
    async with squid_digest(workdir, "pinhole", "s3cret") as port:
        alice, bob = Device(stack.api()), Device(stack.api())
        for device, name in ((alice, "alice"), (bob, "bob")):
            await device.register(ORG, stack.enrollment_key, name)
            await device.discover()
        meeting = (await alice.api.create_meeting()).id
        joined = await alice.join(meeting)
        tls = next(e for e in joined.node.endpoints if e.rung == "tls/443")
        only_proxy = joined.model_copy(update={"plan": [
            Endpoint(rung="http-proxy", transport="http-proxy", port=tls.port)]})
        alice.proxy = ProxyConfig("127.0.0.1", port, "pinhole", "s3cret")
        session = await alice.connect(only_proxy)
        other = await bob.connect(await bob.join(meeting))
        for i in range(10):
            session.send_audio(i.to_bytes(2, "big") + bytes(158))
            other.send_audio(i.to_bytes(2, "big") + bytes(158))
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        assert session.counters.packets_received == 10
        assert other.counters.packets_received == 10
        alice.proxy = ProxyConfig("127.0.0.1", port, "pinhole", "wrong")
        with pytest.raises(MediaError, match="proxy authentication failed"):
            await alice.connect(only_proxy)
        for s in (session, other):
            s.close()
        await asyncio.sleep(0.5)  # squid logs a tunnel when it ends
        access = (workdir / "access.log").read_text()
        assert f"CONNECT {joined.node.address}:{tls.port} pinhole" in access
        for device in (alice, bob):
            await device.api.close()
