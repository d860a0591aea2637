"""The ``engine`` fuzz target (media_node.engine), and the sink of the engine's targets."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from media_node.engine import Engine
from tests.fuzz.targets import PWD
from tests.fuzz.targets.srtp import KEYS
from wire.models import AllocateLeg, IceCredentials, SrtpParams
from wire.srtp import SrtpProfile
from wire.transports import RungName


def _engine() -> tuple[Engine, Any]:
    engine = Engine("fuzz-node", stun_rate=0)
    keys = KEYS[SrtpProfile.AES_CM_128_HMAC_SHA1_80].to_b64()
    engine.allocate(AllocateLeg(
        request_id="r1", leg_id="leg-1", meeting_id="m1", participant_id="p1", ssrc=1111,
        ice=IceCredentials(node_ufrag="nodeufrag", client_ufrag="client",
                           pwd=SecretStr(PWD.decode())),
        srtp=SrtpParams(profile=SrtpProfile.AES_CM_128_HMAC_SHA1_80.value,
                        client_to_node=SecretStr(keys), node_to_client=SecretStr(keys))), 0.0)
    return engine, Sink()


class Sink:
    rung = RungName.UDP_5004

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes, addr: Any) -> None:
        self.sent.append(data)


def engine(data: bytes) -> None:
    """media_node.engine: any datagram is answered, relayed or dropped and counted."""
    node, sink = _engine()
    node.on_packet(data, sink, ("192.0.2.1", 4000), 1.0)
    for answer in sink.sent:
        assert len(answer) <= max(2 * len(data), 20) or node.legs["leg-1"].sink is not None
