"""The media node's TCP/TLS listeners are bounded, on real sockets.

Defects pinned down (before: "The node accepts unlimited TCP/TLS connections
and keeps silent, 1-byte and half-frame ones forever"): a silent connection,
a 1-byte one and one holding half an RFC 4571 frame are each closed by the
first-message deadline; a connection that went quiet after its frames is
closed by the idle timeout; a TLS client that never finishes its handshake is
closed by the handshake deadline; the N+1-th connection from one address and
the connection past the node's total are refused. Every one is counted by
reason (``pinhole_node_connection_refusals_total``).
"""

from __future__ import annotations

import asyncio
import ssl
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest

from media_node.metrics import registry_for, render
from media_node.service import admission_for
from media_node.settings import NODE_LIMITS, NodeSettings
from tests.integration.node_harness import RunningNode, running_node
from tests.waiting import until
from wire.multiplex import encode_frame
from wire.stun import build_discovery_probe

FAST = {"first_message_s": 0.5, "idle_s": 0.8, "handshake_s": 0.5}
# A deadline a test must not meet (its client is served, not closed) is far off: on the
# real clock a short one is met by a busy machine's slow handshake or first frame.
FAR = 30.0


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Seconds until the node closed the connection (EOF or reset); fails past ``seconds``."""
    start = time.monotonic()
    try:
        while await asyncio.wait_for(reader.read(4096), seconds):
            pass
    except (ConnectionResetError, ssl.SSLError):
        pass
    return time.monotonic() - start


@asynccontextmanager
async def node(**settings: float) -> AsyncIterator[RunningNode]:
    limits: dict[str, Any] = {**FAST, **settings}  # ConnectionLimits fields, by name
    async with running_node("node-limits", limits=replace(NODE_LIMITS, **limits)) as running:
        yield running


def _refusals(running: RunningNode) -> dict[str, int]:
    return dict(running.admission.refusals)


@pytest.mark.parametrize("payload", [b"", b"\x00", struct.pack("!H", 100) + b"\x00" * 50],
                         ids=["silent", "one-byte", "half-frame"])
async def test_a_connection_without_a_whole_frame_is_closed(payload: bytes) -> None:
    async with node() as running:
        reader, writer = await asyncio.open_connection(*running.endpoint("tcp/5004"))
        writer.write(payload)
        took = await _closed_within(reader, 5.0)
        writer.close()
        assert took < 5.0
        assert _refusals(running) == {"first_message": 1}
        assert running.admission.open == 0


async def test_a_connection_that_goes_quiet_is_closed_after_the_idle_timeout() -> None:
    # the first frame is due within 1.5 s (the idle timeout is checked from that deadline on)
    async with node(first_message_s=1.5) as running:
        reader, writer = await asyncio.open_connection(*running.endpoint("tcp/5004"))
        writer.write(encode_frame(build_discovery_probe()))
        length = struct.unpack("!H", await reader.readexactly(2))[0]
        assert (await reader.readexactly(length))[:2] == b"\x01\x01"  # Binding success
        await _closed_within(reader, 5.0)
        writer.close()
        assert _refusals(running) == {"idle": 1}


async def test_a_tls_handshake_that_never_finishes_is_closed() -> None:
    async with node() as running:
        reader, writer = await asyncio.open_connection(*running.endpoint("tls/443"))
        writer.write(b"\x16\x03\x01\x00")  # the first bytes of a ClientHello, then nothing
        took = await _closed_within(reader, 5.0)
        writer.close()
        assert took < 5.0
        assert _refusals(running) == {"tls_handshake": 1}


async def test_a_tls_connection_that_completes_is_served() -> None:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    async with node(handshake_s=FAR, first_message_s=FAR, idle_s=FAR) as running:
        reader, writer = await asyncio.open_connection(*running.endpoint("tls/443"),
                                                       ssl=context)
        writer.write(encode_frame(build_discovery_probe()))
        length = struct.unpack("!H", await reader.readexactly(2))[0]
        assert (await reader.readexactly(length))[:2] == b"\x01\x01"
        assert running.admission.open == 1
        writer.close()


async def test_the_connection_past_the_per_source_cap_is_refused_and_counted() -> None:
    async with node(max_connections_per_source=3, first_message_s=30) as running:
        held = [await asyncio.open_connection(*running.endpoint("tcp/5004")) for _ in range(3)]
        reader, writer = await asyncio.open_connection(*running.endpoint("tcp/5004"))
        took = await _closed_within(reader, 2.0)
        assert took < 2.0
        assert _refusals(running) == {"per_source_cap": 1}
        assert running.admission.open == 3
        text = render(registry_for(running.engine, running.admission, lambda: True)).decode()
        assert 'pinhole_node_connection_refusals_total{reason="per_source_cap"} 1' in text
        assert "pinhole_node_connections 3" in text
        # the held connections still work
        held_reader, held_writer = held[0]
        held_writer.write(encode_frame(build_discovery_probe()))
        assert len(await held_reader.readexactly(2)) == 2
        for _, w in (*held, (reader, writer)):
            w.close()


async def test_the_connection_past_the_total_cap_is_refused() -> None:
    async with node(max_connections=2, first_message_s=30) as running:
        held = [await asyncio.open_connection(*running.endpoint("tcp/5004")) for _ in range(2)]
        reader, writer = await asyncio.open_connection(*running.endpoint("tcp/5004"))
        assert await _closed_within(reader, 2.0) < 2.0
        assert _refusals(running) == {"total_cap": 1}
        for _, w in (*held, (reader, writer)):
            w.close()
        # slots come back when connections close
        await until(lambda: running.admission.open == 0, "every slot given back")


def test_the_limits_are_settings_with_flags_and_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from media_node.settings import parse

    monkeypatch.setenv("PINHOLE_IDLE_S", "12")
    s = parse(["--cloud", "https://c", "--max-connections-per-source", "7"])
    assert (s.limits.idle_s, s.limits.max_connections_per_source) == (12.0, 7)
    assert admission_for(s).max_per_source == 7
    assert NodeSettings().limits.first_message_s == 10.0
