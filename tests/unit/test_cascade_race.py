"""A cascade races its ladder, without sockets: two engines joined by paths in memory,
the rungs a firewall blocks made dead ends that take everything and answer nothing.

The task: "Where UDP from the node is blocked, the cascade reached TLS 443 only after
≈ 5 s (UDP 2 s, then TCP 5004 3 s, one after the other), while the client races its
ladder. The cascade too should have media within 1 RTT + 300 ms of the first working
rung." Defect pinned down: before, the dial tried one rung after the other, so the dead
UDP and TCP rungs each timed out (2 s, 3 s) before TLS began; now TLS starts a stagger
later and latches while they still wait. The verdict is the order of events (the dead
rungs ``abandoned``, not timed out), never a time.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from pydantic import SecretStr

from edge.leg_transport import Deliver, LegPath
from hybrid_node.dial import HYBRID_LADDER
from media_node.cascade import CascadeLink, PathOpener
from media_node.engine import Engine
from tests.waiting import HANG_S
from wire.address import Address
from wire.ice_lite import new_password, new_ufrag
from wire.models import AllocateLeg, Endpoint, IceCredentials, NodeInfo, OpenCascade, SrtpParams
from wire.srtp import SrtpKeys
from wire.transports import Rung, RungName

ABANDONED = "abandoned: another rung latched first"


class MemoryPath(LegPath):
    """One rung to the peer's engine in memory: what the link sends, the peer receives as
    from ``source``; its answers come back to the link. Without a peer: a dead end."""

    def __init__(self, rung: RungName, deliver: Deliver, peer: Engine | None,
                 source: tuple[str, int]) -> None:
        super().__init__(rung, deliver)
        self.to_link, self.to_peer, self.source = deliver, peer, source
        self.peer, self.local_port = ("198.51.100.2", 5004), source[1]

    def _send_now(self, data: bytes) -> None:
        if not self.closed and self.to_peer is not None:
            asyncio.get_running_loop().call_soon(
                self.to_peer.on_packet, data, BackSink(self), self.source, time.monotonic())

    def close(self) -> None:
        self.closed = True


class BackSink:
    """The peer's side of a memory path: its answers go back to the link."""

    def __init__(self, path: MemoryPath) -> None:
        self.path, self.rung = path, path.rung

    def send(self, data: bytes, addr: Any = None) -> None:
        if not self.path.closed:
            asyncio.get_running_loop().call_soon(self.path.to_link, data, self.path)

    def __eq__(self, other: object) -> bool:  # one path, one sink, as one socket is
        return isinstance(other, BackSink) and other.path is self.path

    def __hash__(self) -> int:
        return id(self.path)


def memory(peer: Engine, dead: set[RungName], opened: list[MemoryPath]) -> PathOpener:
    ports = itertools.count(40000)

    async def open_path(address: Address, rung: Rung, deliver: Deliver) -> LegPath:
        path = MemoryPath(rung.name, deliver, None if rung.name in dead else peer,
                          ("192.0.2.1", next(ports)))
        opened.append(path)
        return path

    return open_path


def cascade(peer: Engine) -> OpenCascade:
    """What the cloud does: the leg on the peer first, then ``open_cascade`` to the
    initiator with the same credentials."""
    ice = IceCredentials(node_ufrag=new_ufrag(), client_ufrag=new_ufrag(),
                         pwd=SecretStr(new_password()))
    srtp = SrtpParams(profile="AES_CM_128_HMAC_SHA1_80",
                      client_to_node=SecretStr(SrtpKeys.generate().to_b64()),
                      node_to_client=SecretStr(SrtpKeys.generate().to_b64()))
    answer = peer.allocate(AllocateLeg(request_id="r1", leg_id="cas-1", meeting_id="m1",
                                       participant_id="cascade.hyb", ssrc=0, ice=ice,
                                       srtp=srtp, cascade=True), time.monotonic())
    assert answer.ok, answer.detail
    info = NodeInfo(id="cloud-b", kind="cloud", region="r", address="198.51.100.2",
                    endpoints=[Endpoint(rung=r.name, transport=r.transport, port=r.default_port)
                               for r in HYBRID_LADDER])
    return OpenCascade(meeting_id="m1", peer=info, leg_id="cas-1", ice=ice, srtp=srtp)


def engine(name: str) -> Engine:
    return Engine(name, consent_s=30, leg_timeout_s=90)


async def test_udp_and_tcp_dead_the_cascade_latches_on_tls_while_they_still_wait() -> None:
    peer, here = engine("cloud-b"), engine("hyb")
    opened: list[MemoryPath] = []
    link = CascadeLink(here, cascade(peer), ladder=HYBRID_LADDER,
                       open_path=memory(peer, {RungName.UDP_5004, RungName.TCP_5004}, opened))
    assert (link.udp_timeout_s, link.stream_timeout_s) == (2.0, 3.0)  # what they would cost
    link.start()
    async with asyncio.timeout(HANG_S):
        await link.up.wait()
    assert link.rung == RungName.TLS_443
    assert {t.rung: t.outcome for t in link.attempts} == {
        RungName.UDP_5004: ABANDONED, RungName.TCP_5004: ABANDONED,
        RungName.TLS_443: "latched"}
    tls = next(p for p in opened if p.rung == RungName.TLS_443)
    assert [p.closed for p in opened] == [True, True, False]  # the losers are closed
    assert here.legs["cas-1"].sink is tls  # media leaves on the winner
    assert peer.legs["cas-1"].sink == BackSink(tls)  # and the peer latched it there
    await link.close()
    assert tls.closed


async def test_every_rung_dead_the_dial_fails_with_each_rungs_reason() -> None:
    peer = engine("cloud-b")
    opened: list[MemoryPath] = []
    link = CascadeLink(engine("hyb"), cascade(peer), ladder=HYBRID_LADDER,
                       udp_timeout_s=0.3, stream_timeout_s=0.3,
                       open_path=memory(peer, {r.name for r in HYBRID_LADDER}, opened))
    assert await link._connect() is False
    assert not link.up.is_set()
    assert sorted(t.rung for t in link.attempts) == sorted(r.name for r in HYBRID_LADDER)
    assert all(t.outcome != "latched" and t.outcome != ABANDONED for t in link.attempts)
    assert all(p.closed for p in opened)
    await link.close()
