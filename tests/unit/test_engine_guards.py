"""The relay engine's guards and counters that a mutation run found untested.

Each test pins down a mutant of ``media_node/engine.py`` that survived the unit suite
(``make mutate``); the mutated line is named in the test.
"""

from __future__ import annotations

from pydantic import SecretStr

from media_node.engine import Engine
from tests.unit.test_engine import A_ADDR, B_ADDR, FakeSink, Party
from wire.models import IceCredentials, NodeInfo, OpenCascade, SrtpParams
from wire.rtp import build_rtp
from wire.srtp import SrtpKeys, SrtpProfile, SrtpSender
from wire.stun import build_discovery_probe
from wire.transports import RungName

PROFILE = SrtpProfile.AES_CM_128_HMAC_SHA1_80


def _pair(engine: Engine) -> tuple[Party, Party, FakeSink]:
    a, b, sink = Party("a", 1111), Party("b", 2222), FakeSink()
    assert engine.allocate(a.allocate(), 0.0).ok
    assert engine.allocate(b.allocate(), 0.0).ok
    engine.on_packet(a.binding(), sink, A_ADDR, 1.0)
    engine.on_packet(b.binding(), sink, B_ADDR, 1.0)
    sink.sent.clear()
    return a, b, sink


def test_a_second_leg_with_a_node_ufrag_in_use_is_refused() -> None:
    """Two legs on one ufrag would let one password latch the other's leg."""
    engine = Engine("n")
    a = Party("a", 1)
    assert engine.allocate(a.allocate(), 0.0).ok
    twin = a.allocate().model_copy(update={"leg_id": "leg-twin", "request_id": "r-twin"})
    answer = engine.allocate(twin, 0.0)
    assert not answer.ok and answer.detail == "node ufrag already in use"
    assert "leg-twin" not in engine.legs


def test_relayed_bytes_and_packets_are_counted_exactly() -> None:
    engine = Engine("n")
    a, _b, _sink = _pair(engine)
    packet = a.rtp(bytes(160))
    engine.on_packet(packet, _sink, A_ADDR, 2.0)
    assert (engine.packets_in, engine.bytes_in) == (1, len(packet))
    assert engine.packets_out == 1 and engine.bytes_out == len(_sink.sent[0][0])


def test_node_totals_keep_the_packets_of_released_legs() -> None:
    """The node's totals are its legs' counters summed when read (a packet updates only
    its legs'), plus what released legs carried: a metric never goes backwards."""
    engine = Engine("n")
    a, b, sink = _pair(engine)
    packet = a.rtp(bytes(160))
    engine.on_packet(packet, sink, A_ADDR, 2.0)
    before = (engine.packets_in, engine.bytes_in, engine.packets_out, engine.bytes_out)
    assert before == (1, len(packet), 1, len(sink.sent[0][0]))
    engine.release(a.leg_id)
    engine.release(b.leg_id)
    assert not engine.legs
    assert (engine.packets_in, engine.bytes_in, engine.packets_out, engine.bytes_out) == before


def test_drops_are_counted_per_leg_and_per_node() -> None:
    engine = Engine("n")
    a, _b, sink = _pair(engine)
    forged = SrtpSender(SrtpKeys.generate(PROFILE)).protect(
        build_rtp(payload_type=0, sequence=1, timestamp=1, ssrc=a.ssrc, payload=bytes(20)))
    engine.on_packet(forged, sink, A_ADDR, 2.0)
    engine.on_packet(forged, sink, A_ADDR, 2.1)
    assert engine.drops["auth"] == 2
    assert engine.legs[a.leg_id].drops == {"auth": 2}


def test_a_closed_connection_unlatches_only_its_own_legs() -> None:
    """A TCP/TLS connection that ends frees its legs' paths, not the others'."""
    engine = Engine("n")
    a, b = Party("a", 1), Party("b", 2)
    engine.allocate(a.allocate(), 0.0)
    engine.allocate(b.allocate(), 0.0)
    tcp_a, tcp_b = FakeSink(RungName.TCP_5004), FakeSink(RungName.TCP_5004)
    engine.on_packet(a.binding(), tcp_a, A_ADDR, 1.0)
    engine.on_packet(b.binding(), tcp_b, B_ADDR, 1.0)
    engine.sink_closed(tcp_a)
    assert engine.legs[a.leg_id].sink is None
    assert engine.legs[b.leg_id].sink is tcp_b
    b_packet = b.rtp(bytes(20))
    engine.on_packet(b_packet, tcp_b, B_ADDR, 2.0)  # b still relays (to nobody latched)
    assert engine.packets_in == 1


def test_consent_holds_for_exactly_consent_s() -> None:
    """RFC 7675 §5.1: consent expires when more than the consent time has passed."""
    engine = Engine("n", consent_s=30)
    a, _b, _sink = _pair(engine)
    engine.tick(1.0 + 30)
    assert not engine.legs[a.leg_id].consent_lost
    engine.tick(1.0 + 30.001)
    assert engine.legs[a.leg_id].consent_lost


def test_only_unauthenticated_stun_is_rate_limited() -> None:
    """The per-source STUN limit is for discovery and junk; a latched client's consent
    checks (authenticated) are never dropped by it."""
    engine = Engine("n", stun_rate=0.001, stun_burst=1)
    a, sink = Party("a", 1), FakeSink()
    engine.allocate(a.allocate(), 0.0)
    for i in range(5):
        engine.on_packet(a.binding(), sink, A_ADDR, 1.0 + i * 0.01)
    assert engine.stun_answers == {"leg": 5}
    engine.on_packet(build_discovery_probe(), sink, A_ADDR, 2.0)
    engine.on_packet(build_discovery_probe(), sink, A_ADDR, 2.01)
    assert engine.stun_answers == {"leg": 5, "discovery": 1}
    assert engine.drops.get("stun_rate") == 1


def test_a_cascade_carries_remote_ssrcs_but_not_a_local_participants() -> None:
    """docs/design.md "SRTP" (the SFU): a cascade leg carries many SSRCs, never one of this
    node's own participants (spoofing); an outbound cascade leg is a cascade leg."""
    engine = Engine("n")
    local = Party("a", 1111)
    engine.allocate(local.allocate(), 0.0)
    local_sink = FakeSink()
    engine.on_packet(local.binding(), local_sink, A_ADDR, 1.0)
    up, down = SrtpKeys.generate(PROFILE), SrtpKeys.generate(PROFILE)
    peer = NodeInfo(id="peer", kind="cloud", region="r", address="192.0.2.99", endpoints=[])
    command = OpenCascade(
        meeting_id="m1", peer=peer, leg_id="cascade-1",
        ice=IceCredentials(node_ufrag="peerxx", client_ufrag="selfyy",
                           pwd=SecretStr("cascade+password+0123456789")),
        srtp=SrtpParams(profile=PROFILE.value, client_to_node=SecretStr(up.to_b64()),
                        node_to_client=SecretStr(down.to_b64())))
    leg = engine.add_outbound_cascade(command, 1.0)
    assert leg.cascade
    cascade_sink = FakeSink()
    engine.latch_outbound(leg, cascade_sink, B_ADDR, 1.0)
    from_peer = SrtpSender(down)  # the peer protects what it sends us with node_to_client
    remote = from_peer.protect(build_rtp(payload_type=0, sequence=1, timestamp=1,
                                         ssrc=7777, payload=bytes(20)))
    engine.on_packet(remote, cascade_sink, B_ADDR, 2.0)
    assert len(local_sink.sent) == 2  # the binding answer, then the remote's packet
    spoof = from_peer.protect(build_rtp(payload_type=0, sequence=2, timestamp=2,
                                        ssrc=local.ssrc, payload=bytes(20)))
    engine.on_packet(spoof, cascade_sink, B_ADDR, 2.1)
    assert len(local_sink.sent) == 2
    assert engine.legs["cascade-1"].drops == {"ssrc": 1}
