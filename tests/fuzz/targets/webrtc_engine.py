"""The ``webrtc_engine`` fuzz target (media_node.engine with a WebRTC leg)."""

from __future__ import annotations

from pydantic import SecretStr

from media_node.engine import Engine
from tests.fuzz.targets import PWD
from tests.fuzz.targets.dtls import certificate
from tests.fuzz.targets.engine import Sink
from wire.models import AllocateLeg, IceCredentials, PayloadTypeMap, SendSlot, WebRtcLegParams
from wire.stun import build_leg_binding


def webrtc_engine(data: bytes) -> None:
    """media_node.engine with a WebRTC leg latched, before its DTLS: any datagram on its
    path is answered, handed to its DTLS or dropped and counted."""
    node = Engine("fuzz-node", stun_rate=0, certificate=certificate())
    answer = node.allocate(AllocateLeg(
        request_id="r1", leg_id="leg-1", meeting_id="m1", participant_id="p1", ssrc=1111,
        ice=IceCredentials(node_ufrag="nodeufrag", client_ufrag="client",
                           pwd=SecretStr(PWD.decode())),
        webrtc=WebRtcLegParams(fingerprint=str(certificate().fingerprint), ssrcs=[1111],
                               payload_types=[PayloadTypeMap(leg=96, meeting=120)],
                               slots=[SendSlot(ssrc=7, kind="video")])), 0.0)
    assert answer.ok
    sink = Sink()
    node.on_packet(build_leg_binding("nodeufrag", "client", PWD, use_candidate=True,
                                     controlling=1), sink, ("192.0.2.1", 4000), 1.0)
    assert node.legs["leg-1"].sink is sink
    node.on_packet(data, sink, ("192.0.2.1", 4000), 1.0)
    node.tick(5.0)
