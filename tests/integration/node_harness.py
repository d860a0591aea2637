"""A media node's data plane on real sockets in the test's own event loop.

The engine and its UDP/TCP/TLS listeners run exactly as in the service; only
the control channel is replaced by the test calling ``allocate`` itself (the
control channel has its own test through the loopback stack).

``running_node(clock=FakeClock())`` gives the listeners (the engine's ``now`` per
packet) and the tick loop the test's clock, so consent and leg timeouts move when
the test advances it, not with the machine's load.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from client.media import MediaSession
from edge.admission import Admission
from lab.net import free_block
from media_node.engine import Engine
from media_node.service import admission_for, start_listeners
from media_node.settings import NodeSettings
from wire.address import Address
from wire.ice_lite import new_password, new_ufrag
from wire.models import (
    AllocateLeg,
    AssignmentReason,
    IceCredentials,
    Joined,
    NodeInfo,
    OpenCascade,
    SrtpParams,
)
from wire.srtp import SrtpKeys, SrtpProfile
from wire.transports import RUNGS_BY_NAME, RungName, Transport


@dataclass
class RunningNode:
    engine: Engine
    info: NodeInfo
    admission: Admission
    closers: list[Any] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic

    def tick(self) -> None:
        """What the tick loop does, now: consent expiry and leg timeouts at ``clock()``."""
        self.engine.tick(self.clock())

    def endpoint(self, rung: str) -> Address:
        for e in self.info.endpoints:
            if e.rung == rung:
                return Address(self.info.address, e.port)
        raise KeyError(rung)


@asynccontextmanager
async def running_node(node_id: str = "node-t", *, clock: Callable[[], float] = time.monotonic,
                       **settings: Any) -> AsyncIterator[RunningNode]:
    address = free_block() + ".2"
    config = NodeSettings(cloud="https://unused", node_id=node_id, advertise=address,
                          **settings)
    engine = Engine(node_id, consent_s=config.consent_s, leg_timeout_s=config.leg_timeout_s,
                    stun_rate=config.stun_rate, stun_burst=config.stun_burst,
                    stun_ip_rate=config.stun_ip_rate, stun_ip_burst=config.stun_ip_burst)
    admission = admission_for(config)
    with tempfile.TemporaryDirectory() as tmp:
        endpoints, fingerprint, closers = await start_listeners(config, engine, Path(tmp),
                                                                admission, clock=clock)
        info = NodeInfo(id=node_id, kind="cloud", region="test", address=address,
                        endpoints=endpoints, fingerprint=fingerprint)

        async def ticks() -> None:
            while True:
                await asyncio.sleep(0.2)
                engine.tick(clock())

        ticker = asyncio.create_task(ticks())
        try:
            yield RunningNode(engine, info, admission, list(closers), clock)
        finally:
            ticker.cancel()
            for closer in closers:
                closer.close()


def credentials(profile: SrtpProfile = SrtpProfile.AES_CM_128_HMAC_SHA1_80
                ) -> tuple[IceCredentials, SrtpParams]:
    ice = IceCredentials(node_ufrag=new_ufrag(), client_ufrag=new_ufrag(),
                         pwd=SecretStr(new_password()))
    srtp = SrtpParams(profile=profile.value,
                      client_to_node=SecretStr(SrtpKeys.generate(profile).to_b64()),
                      node_to_client=SecretStr(SrtpKeys.generate(profile).to_b64()))
    return ice, srtp


def join(node: RunningNode, meeting: str, ssrc: int, *, participant: str | None = None,
         profile: SrtpProfile = SrtpProfile.AES_CM_128_HMAC_SHA1_80) -> Joined:
    """What the cloud would do on join: allocate a leg on the node and answer the client."""
    ice, srtp = credentials(profile)
    pid = participant or f"p-{ssrc}"
    answer = node.engine.allocate(AllocateLeg(
        request_id=f"r-{pid}", leg_id=f"leg-{pid}", meeting_id=meeting, participant_id=pid,
        ssrc=ssrc, ice=ice, srtp=srtp), node.clock())
    assert answer.ok, answer.detail
    return Joined(
        meeting_id=meeting, participant_id=pid, node=node.info,
        plan=list(node.info.endpoints),
        ice=ice, srtp=srtp, ssrc=ssrc,
        reason=AssignmentReason(chosen=node.info.id, rule="test", candidates=[]),
    )


async def connect(node: RunningNode, joined: Joined, rung: RungName) -> MediaSession:
    session = MediaSession(joined)
    address = node.endpoint(rung)
    transport = RUNGS_BY_NAME[rung].transport
    if transport is Transport.UDP:
        await session.connect_udp(address, rung)
    else:
        await session.connect_stream(address, rung, tls=transport is Transport.TLS)
    return session


def cascade(initiator: RunningNode, peer: RunningNode, meeting: str) -> OpenCascade:
    """What the cloud would do to join two nodes of a meeting: a leg on the peer, then open."""
    ice, srtp = credentials()
    leg_id = f"cascade-{initiator.info.id}-{peer.info.id}"
    answer = peer.engine.allocate(AllocateLeg(
        request_id=f"r-{leg_id}", leg_id=leg_id, meeting_id=meeting,
        participant_id=f"cascade:{initiator.info.id}", ssrc=0, ice=ice, srtp=srtp,
        cascade=True), peer.clock())
    assert answer.ok, answer.detail
    return OpenCascade(meeting_id=meeting, peer=peer.info, leg_id=leg_id, ice=ice, srtp=srtp)
