"""Signaling and media through a real HTTP proxy (Debian's tinyproxy, Basic auth).

Seed: the app sends "the signaling and media through the HTTP proxy", which
must allow CONNECT to port 443. Media takes the http-proxy rung: CONNECT
node:443, TLS (the node's certificate checked against the node list), RFC 4571
framing inside.
"""

from __future__ import annotations

import asyncio
import socket
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
