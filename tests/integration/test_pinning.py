"""A TLS-inspecting middlebox is detected by pinning, for the cloud and for media nodes.

The middlebox here is real: it terminates TLS with a certificate from its own
CA (which the device trusts, as an enterprise would install it) and opens its
own TLS connection onwards. Chain validation passes; the pins do not, and the
error says what is happening and which domains to exempt from inspection.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from client.api import CloudApi, PinError
from client.device import Device
from client.media import MediaError
from lab.net import free_block
from lab.pki import ORG
from lab.stack import NodeSpec, Stack, running_stack
from wire.address import Address
from wire.models import Endpoint
from wire.tls import issue, make_ca, server_context, unverified_client_context

pytestmark = pytest.mark.slow


@asynccontextmanager
async def inspecting_proxy(upstream: Address, workdir: Path
                           ) -> AsyncIterator[tuple[Address, Path]]:
    """Listen on a fresh loopback address, re-sign with our CA, relay to ``upstream``."""
    now = datetime.datetime.now(datetime.UTC)
    ca = make_ca(now, "Inspecting firewall CA")
    host = free_block() + ".99"
    cert = issue(ca, [host], now)
    (workdir / "mitm-ca.pem").write_bytes(ca.cert_pem)
    (workdir / "mitm.pem").write_bytes(cert.cert_pem)
    (workdir / "mitm.key").write_bytes(cert.key_pem)
    context = server_context(str(workdir / "mitm.pem"), str(workdir / "mitm.key"))

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(
                upstream.host, upstream.port, ssl=unverified_client_context())
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, host, upstream.port, ssl=context)
    try:
        yield Address(host, upstream.port), workdir / "mitm-ca.pem"
    finally:
        server.close()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack([NodeSpec("node-a", "eu", 0)], state_dir=tmp_path / "s") as s:
        yield s


def _trusting(*ca_files: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    for ca in ca_files:
        context.load_verify_locations(ca)
    return context


async def test_inspected_cloud_connection_fails_the_pin(stack: Stack, tmp_path: Path) -> None:
    """Issue 5: the cloud's key is pinned (learned at enrollment); inspection is detected."""
    direct = CloudApi(stack.cloud_url, _trusting(stack.ca_file))
    await Device(direct).register(ORG, stack.enrollment_key, "alice")
    learned = direct.seen_pin
    assert learned is not None and learned.startswith("sha256/")
    await direct.close()
    host, port = stack.cloud_url.removeprefix("https://").rsplit(":", 1)
    cloud = Address(host, int(port))
    async with inspecting_proxy(cloud, tmp_path) as (mitm, mitm_ca):
        url = f"https://{mitm.host}:{mitm.port}"
        unpinned = CloudApi(url, _trusting(stack.ca_file, str(mitm_ca)))  # without a pin,
        # inspection by a CA the device trusts is invisible
        await Device(unpinned).register(ORG, stack.enrollment_key, "bob")
        await unpinned.close()
        pinned = CloudApi(url, _trusting(stack.ca_file, str(mitm_ca)), pin=learned)
        with pytest.raises(PinError, match=r"certificate pinning failed for the cloud.*"
                           r"TLS-inspecting.*exempt these from HTTPS inspection: "
                           + mitm.host.replace(".", r"\.")):
            await Device(pinned).register(ORG, stack.enrollment_key, "carol")
        await pinned.close()


async def test_inspected_media_tls_fails_the_node_fingerprint(stack: Stack,
                                                              tmp_path: Path) -> None:
    """Issue 5: a node's TLS certificate must match the fingerprint in the node list."""
    device = Device(stack.api())
    await device.register(ORG, stack.enrollment_key, "alice")
    await device.discover()
    joined = await device.join((await device.api.create_meeting()).id)
    tls = next(e for e in joined.node.endpoints if e.rung == "tls/443")
    async with inspecting_proxy(Address(joined.node.address, tls.port), tmp_path) as (mitm, _):
        node = joined.node.model_copy(update={"address": mitm.host})
        intercepted = joined.model_copy(update={"node": node, "plan": [
            Endpoint(rung="tls/443", transport="tls", port=mitm.port)]})
        with pytest.raises(MediaError, match=r"certificate pinning failed for media node "
                           r"node-a.*TLS-inspecting"):
            await device.connect(intercepted)
    await device.api.close()
