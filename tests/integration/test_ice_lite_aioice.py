"""A node leg against aioice's full ICE agent (controlling, aggressive nomination), on loopback.

aioice, told its peer is not lite, puts USE-CANDIDATE on every check (RFC 5245's
aggressive nomination). Defect: with the node's two UDP candidates, 5004 and
33434, aioice nominated 5004, the node latched to 33434 whose check came
later, and 0 of 50 packets reached the client until its next consent check.
The node is a lite agent (RFC 8445 §7.3.2): of the nominated pairs the one of
highest priority is selected (§8.1.1), and later checks on another pair are
answered (§8.1.2) without moving media (§12.1).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from aioice import Candidate, Connection
from aioice.ice import CandidatePair
from aioice.stun import Message

from tests.integration.node_harness import RunningNode, connect, join, running_node
from tests.waiting import HANG_S, until
from wire.ice_lite import local_priority
from wire.models import Joined
from wire.rtp import build_rtp
from wire.srtp import SrtpKeys, SrtpProfile, SrtpSender
from wire.transports import RungName


class LoopbackAgent(Connection):
    """aioice's full agent with its one host candidate on ``host`` (the test's loopback
    block): aioice leaves 127.0.0.0/8 out of the addresses it gathers."""

    def __init__(self, host: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._host = host

    async def gather_candidates(self) -> None:
        self._local_candidates += await self.get_component_candidates(1, [self._host])
        self._local_candidates_end = True


def _node_candidate(node: RunningNode, rung: RungName) -> Candidate:
    """The node's host candidate on ``rung``, with the priority the node gives it."""
    address = node.endpoint(rung)
    return Candidate(foundation=rung.replace("/", ""), component=1, transport="udp",
                     priority=local_priority(rung), host=address.host, port=address.port,
                     type="host")


async def _agent_for(node: RunningNode, joined: Joined) -> LoopbackAgent:
    """aioice as the participant's client: USERNAME "<node ufrag>:<client ufrag>", the
    leg's password for MESSAGE-INTEGRITY (what the node's credentials give it)."""
    host = node.info.address.rsplit(".", 1)[0] + ".1"
    agent = LoopbackAgent(host, ice_controlling=True, use_ipv6=False,
                          local_username=joined.ice.client_ufrag)  # aioice checks ice-chars
    agent.remote_username = joined.ice.node_ufrag
    agent.remote_password = joined.ice.pwd.get_secret_value()
    await agent.gather_candidates()
    for rung in (RungName.UDP_5004, RungName.UDP_33434):
        await agent.add_remote_candidate(_node_candidate(node, rung))
    await agent.add_remote_candidate(None)
    return agent


def _count_media_sources(agent: LoopbackAgent) -> Counter[int]:
    """SRTP datagrams at the agent's socket, by the node port they came from."""
    [protocol] = agent._protocols
    heard: Counter[int] = Counter()
    deliver = protocol.datagram_received

    def counting(data: bytes | str, addr: tuple[Any, ...]) -> None:
        if isinstance(data, bytes) and data and 128 <= data[0] < 192:
            heard[addr[1]] += 1
        deliver(data, addr)

    protocol.__dict__["datagram_received"] = counting  # this test peer's one socket
    return heard


async def _nominate(agent: LoopbackAgent, candidate: Candidate) -> Message:
    """One more of aioice's own checks, USE-CANDIDATE set, on the pair towards
    ``candidate`` (a browser goes on checking its other pairs after it nominates)."""
    [protocol] = agent._protocols
    pair = CandidatePair(protocol, candidate)
    request = agent.build_request(pair, nominate=True)
    assert "USE-CANDIDATE" in request.attributes and "ICE-CONTROLLING" in request.attributes
    assert agent.remote_password is not None
    response, _ = await protocol.request(request, pair.remote_addr,
                                         integrity_key=agent.remote_password.encode())
    return response


async def test_aioice_aggressive_nomination_gets_media_on_the_nominated_pair() -> None:
    """RFC 8445 §8.1.1: the node sends media on the nominated pair of highest priority,
    5004, from the first packet, though a nominating check on 33434 came after it."""
    async with running_node() as node:
        joined = join(node, "m-ice", 1111, participant="browser")
        agent = await _agent_for(node, joined)
        heard = _count_media_sources(agent)
        try:
            await asyncio.wait_for(agent.connect(), HANG_S)
            p5004, p33434 = (node.endpoint(r).port for r in ("udp/5004", "udp/33434"))
            [nominated] = agent._nominated.values()
            assert nominated.remote_addr[1] == p5004  # aioice's choice
            response = await _nominate(agent, _node_candidate(node, RungName.UDP_33434))
            assert response.message_class.name == "RESPONSE"  # answered (§8.1.2)
            leg = node.engine.legs["leg-browser"]
            assert leg.ice.nominated(next(p for p in leg.ice.pairs if p[0].rung == "udp/33434"))

            other = await connect(node, join(node, "m-ice", 2222), RungName.UDP_5004)
            try:
                for i in range(50):
                    other.send_audio(i.to_bytes(2, "big") + bytes(158))
                await until(lambda: heard[p5004] == 50, "50 packets from the node's 5004")
                assert heard[p33434] == 0

                # and the agent's own media, on its nominated pair, reaches the other side
                sender = SrtpSender(SrtpKeys.from_b64(
                    SrtpProfile(joined.srtp.profile),
                    joined.srtp.client_to_node.get_secret_value()))
                await agent.send(sender.protect(build_rtp(
                    payload_type=0, sequence=1, timestamp=160, ssrc=1111,
                    payload=bytes(160))))
                await until(lambda: other.counters.packets_received == 1,
                            "the agent's packet relayed to the other participant")
            finally:
                other.close()
        finally:
            await agent.close()
