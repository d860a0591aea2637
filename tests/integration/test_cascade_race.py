"""A cascade races its ladder, on real sockets (the requirement: "Where UDP from the node is
blocked, the cascade reached TLS 443 only after ≈ 5 s (UDP 2 s, then TCP 5004 3 s, one
after the other), while the client races its ladder. The cascade too should have media
within 1 RTT + 300 ms of the first working rung.").

The peer's UDP 5004 and TCP 5004 are made dead ends the way a firewall makes them: a UDP
socket that never answers, a TCP listener that accepts and never answers; its TLS 443 is
the real one. The verdict is the order of events, not a time: the link is up on TLS
while the UDP and TCP attempts, each given its whole latch timeout (2 s, 3 s), were still
waiting (``abandoned``), where the ladder tried one rung after the other they had timed
out first. Defect pinned down: before, a dead UDP and TCP cost their timeouts in turn
(≈ 5 s); now they cost one stagger each.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from hybrid_node.dial import hybrid_dialler
from media_node.cascade import CascadeLink
from tests.integration.node_harness import RunningNode, cascade, connect, join, running_node
from tests.integration.test_media_node import _exchange
from tests.waiting import HANG_S
from wire.models import OpenCascade
from wire.transports import RungName

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def dead_ends(host: str) -> AsyncIterator[tuple[int, int]]:
    """A UDP port and a TCP port on ``host`` that take everything and answer nothing."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((host, 0))
    accepted: list[asyncio.StreamWriter] = []

    async def swallow(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # held open, never answered

    tcp = await asyncio.start_server(swallow, host, 0)
    try:
        yield udp.getsockname()[1], tcp.sockets[0].getsockname()[1]
    finally:
        udp.close()
        for writer in accepted:
            writer.close()
        tcp.close()


def behind_a_firewall(command: OpenCascade, udp_port: int, tcp_port: int) -> OpenCascade:
    """The peer as the node list publishes it, its UDP and TCP 5004 leading to dead ends."""
    ports = {RungName.UDP_5004: udp_port, RungName.TCP_5004: tcp_port}
    endpoints = [e.model_copy(update={"port": ports.get(e.rung, e.port)})
                 for e in command.peer.endpoints]
    return command.model_copy(update={"peer": command.peer.model_copy(
        update={"endpoints": endpoints})})


async def _media_crosses(link: CascadeLink, a: RunningNode, b: RunningNode) -> None:
    x, y = join(a, "m1", 1), join(b, "m1", 2)
    sessions = [await connect(a, x, RungName.UDP_5004), await connect(b, y, RungName.UDP_5004)]
    await _exchange(sessions, 10)
    assert Counter(s for s, _, _ in sessions[0].payloads) == {2: 10}
    assert Counter(s for s, _, _ in sessions[1].payloads) == {1: 10}
    for session in sessions:
        session.close()


async def test_udp_and_tcp_blocked_the_cascade_is_up_on_tls_without_waiting_them_out(
        ) -> None:
    async with running_node("hyb") as a, running_node("cloud-b") as b, \
            dead_ends(b.info.address) as (udp_port, tcp_port):
        command = behind_a_firewall(cascade(a, b, "m1"), udp_port, tcp_port)
        link = hybrid_dialler(local_host=a.info.address)(a.engine, command)
        assert isinstance(link, CascadeLink)
        assert (link.udp_timeout_s, link.stream_timeout_s) == (2.0, 3.0)  # the defaults
        link.start()
        async with asyncio.timeout(HANG_S):
            await link.up.wait()
        assert link.rung == RungName.TLS_443
        outcomes = {t.rung: t.outcome for t in link.attempts}
        assert outcomes == {RungName.UDP_5004: "abandoned: another rung latched first",
                            RungName.TCP_5004: "abandoned: another rung latched first",
                            RungName.TLS_443: "latched"}
        tls = next(t for t in link.attempts if t.rung == RungName.TLS_443)
        print(f"cascade up on TLS 443 {tls.ms} ms after the dial (UDP and TCP dead ends)")
        await _media_crosses(link, a, b)  # the winner carries media, the peer latched on it
        await link.close()


async def test_where_every_rung_works_the_best_one_wins_and_media_crosses() -> None:
    """UDP answers within its head start: the others are closed unused (or never begun),
    and the peer's latch is on UDP."""
    async with running_node("hyb") as a, running_node("cloud-b") as b:
        link = hybrid_dialler(local_host=a.info.address)(a.engine, cascade(a, b, "m1"))
        assert isinstance(link, CascadeLink)
        link.start()
        async with asyncio.timeout(HANG_S):
            await link.up.wait()
        assert link.rung == RungName.UDP_5004
        assert [t.rung for t in link.attempts if t.outcome == "latched"] == [RungName.UDP_5004]
        peer_leg = next(leg for leg in b.engine.legs.values() if leg.cascade)
        assert peer_leg.addr == (a.info.address, link.local_port)
        await _media_crosses(link, a, b)
        await link.close()
