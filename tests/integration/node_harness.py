"""A media node's data plane on real sockets in the test's own event loop.

The engine and its UDP/TCP/TLS listeners run exactly as in the service; only
the control channel is replaced by the test calling ``allocate`` itself (the
control channel has its own test through the loopback stack).
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from client.media import MediaSession
from lab.net import free_block
from media_node.engine import Engine
from media_node.service import admission_for, start_listeners
from media_node.settings import NodeSettings
from wire.address import Address
from wire.admission import Admission
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


@dataclass
class RunningNode:
    engine: Engine
    info: NodeInfo
    admission: Admission
    closers: list[Any] = field(default_factory=list)

    def endpoint(self, rung: str) -> Address:
        for e in self.info.endpoints:
            if e.rung == rung:
                return Address(self.info.address, e.port)
        raise KeyError(rung)


@asynccontextmanager
async def running_node(node_id: str = "node-t", **settings: Any) -> AsyncIterator[RunningNode]:
    address = free_block() + ".2"
    config = NodeSettings(cloud="https://unused", node_id=node_id, advertise=address,
                          **settings)
    engine = Engine(node_id, consent_s=config.consent_s, leg_timeout_s=config.leg_timeout_s,
                    stun_rate=config.stun_rate, stun_burst=config.stun_burst,
                    stun_ip_rate=config.stun_ip_rate, stun_ip_burst=config.stun_ip_burst)
    admission = admission_for(config)
    with tempfile.TemporaryDirectory() as tmp:
        endpoints, fingerprint, closers = await start_listeners(config, engine, Path(tmp),
                                                                admission)
        info = NodeInfo(id=node_id, kind="cloud", region="test", address=address,
                        endpoints=endpoints, fingerprint=fingerprint)

        async def ticks() -> None:
            while True:
                await asyncio.sleep(0.2)
                engine.tick(time.monotonic())

        ticker = asyncio.create_task(ticks())
        try:
            yield RunningNode(engine, info, admission, list(closers))
        finally:
            ticker.cancel()
            for closer in closers:
                closer.close()


def credentials(profile: SrtpProfile = SrtpProfile.AES_CM_128_HMAC_SHA1_80
                ) -> tuple[IceCredentials, SrtpParams]:
    ice = IceCredentials(node_ufrag=secrets.token_hex(4), client_ufrag=secrets.token_hex(4),
                         pwd=SecretStr(secrets.token_urlsafe(18)))
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
        ssrc=ssrc, ice=ice, srtp=srtp), time.monotonic())
    assert answer.ok, answer.detail
    return Joined(
        meeting_id=meeting, participant_id=pid, node=node.info,
        plan=list(node.info.endpoints),
        ice=ice, srtp=srtp, ssrc=ssrc,
        reason=AssignmentReason(chosen=node.info.id, rule="test", candidates=[]),
    )


async def connect(node: RunningNode, joined: Joined, rung: str) -> MediaSession:
    session = MediaSession(joined)
    address = node.endpoint(rung)
    if rung.startswith("udp"):
        await session.connect_udp(address, rung)
    else:
        await session.connect_stream(address, rung, tls=rung.startswith("tls"))
    return session


def cascade(initiator: RunningNode, peer: RunningNode, meeting: str) -> OpenCascade:
    """What the cloud would do to join two nodes of a meeting: a leg on the peer, then open."""
    ice, srtp = credentials()
    leg_id = f"cascade-{initiator.info.id}-{peer.info.id}"
    answer = peer.engine.allocate(AllocateLeg(
        request_id=f"r-{leg_id}", leg_id=leg_id, meeting_id=meeting,
        participant_id=f"cascade:{initiator.info.id}", ssrc=0, ice=ice, srtp=srtp,
        cascade=True), time.monotonic())
    assert answer.ok, answer.detail
    return OpenCascade(meeting_id=meeting, peer=peer.info, leg_id=leg_id, ice=ice, srtp=srtp)
