"""The shared leg transport (``edge.leg_transport``) on loopback, against a real node.

The http-proxy rung is TLS inside an HTTP CONNECT tunnel (RFC 9110 §9.3.6), framed
by RFC 4571, with the node's certificate pinned to the node list's fingerprint.
A CONNECT relay in the test stands in for the proxy; the client runs on the
default loop and on uvloop (what ``pinhole`` runs on), whose ``start_tls``
differs.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import uvloop

from client.errors import MediaError
from client.media import MediaSession
from client.proxy import ProxyConfig, open_tunnel
from edge.leg_transport import open_stream
from tests.integration.node_harness import RunningNode, join, running_node
from tests.waiting import until
from wire.address import Address
from wire.transports import RungName


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def _connect_relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A CONNECT proxy without authentication: ``CONNECT host:port``, 200, then bytes."""
    head = await reader.readuntil(b"\r\n\r\n")
    host, _, port = head.split(b" ")[1].decode().rpartition(":")
    up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _through_tunnel(node: RunningNode, *, fingerprint: str | None = None) -> MediaSession:
    joined = join(node, "m1", 11)
    if fingerprint is not None:
        joined = joined.model_copy(update={"node": joined.node.model_copy(
            update={"fingerprint": fingerprint})})
    server = await asyncio.start_server(_connect_relay, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await open_tunnel(ProxyConfig("127.0.0.1", port),
                                           node.endpoint("tls/443"), timeout_s=3.0)
        session = MediaSession(joined)
        await session.connect_tunnel(reader, writer, RungName.HTTP_PROXY, timeout_s=3.0)
        return session
    finally:
        server.close()


async def _latches_through_a_tunnel() -> None:
    async with running_node() as node:
        session = await _through_tunnel(node)
        try:
            assert session.rung == "http-proxy" and session.latched_at is not None
            session.send_audio(bytes(160))
            await until(lambda: node.engine.stats()["leg-p-11"].packets_in >= 1,
                        "the node counted the packet sent through the tunnel")
        finally:
            session.close()


async def test_a_leg_latches_through_a_connect_tunnel() -> None:
    """Media flows after the latch: the tunnel's StreamWriter, once TLS runs over its
    connection, must stay referenced (collected, it closes that connection)."""
    await _latches_through_a_tunnel()


def test_a_leg_latches_through_a_connect_tunnel_on_uvloop() -> None:
    """The same on uvloop, whose ``start_tls`` is its own implementation."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_latches_through_a_tunnel())


async def test_a_re_signed_certificate_in_the_tunnel_is_named() -> None:
    """A TLS-inspecting proxy re-signs the node's TLS: the pin names it, nothing latches."""
    async with running_node() as node:
        with pytest.raises(MediaError, match="TLS inspection of media node node-t"):
            await _through_tunnel(node, fingerprint=":".join(["AB"] * 32))


async def test_a_stream_that_is_not_framing_is_closed_and_counted() -> None:
    """A frame longer than any media packet (``wire.multiplex``'s limit) is not
    framing: the path counts it and closes, it never waits for 65535 bytes."""
    counted: list[str] = []
    closed = asyncio.Event()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\xff\xff" + bytes(8))
        await writer.drain()
        await reader.read()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        path = await open_stream(Address("127.0.0.1", port), RungName.TCP_5004,
                                 lambda data, path: None, tls=False, timeout_s=3.0,
                                 count=counted.append, on_closed=lambda path: closed.set())
        await asyncio.wait_for(closed.wait(), 15.0)
    finally:
        server.close()
    assert counted == ["framing"] and path.closed
