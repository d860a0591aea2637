"""The relay engine without sockets: latching, SFU forwarding, drops, consent (fake clock)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from media_node.engine import SEEN_TRANSACTIONS, Engine
from wire.address import Address
from wire.models import AllocateLeg, IceCredentials, LegEvent, NodeInfo, OpenCascade, SrtpParams
from wire.rtp import build_rtcp_receiver_report, build_rtp, parse_rtp_header
from wire.srtp import SrtpKeys, SrtpProfile, SrtpReceiver, SrtpSender
from wire.stun import build_discovery_probe, build_leg_binding, parse_binding_response
from wire.transports import RungName

PROFILE = SrtpProfile.AES_CM_128_HMAC_SHA1_80


class FakeSink:
    def __init__(self, rung: RungName = RungName.UDP_5004) -> None:
        self.rung = rung
        self.sent: list[tuple[bytes, Any]] = []

    def send(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))


class Party:
    """What a client holds after joining: credentials and its two SRTP directions."""

    def __init__(self, name: str, ssrc: int) -> None:
        self.up = SrtpKeys.generate(PROFILE)
        self.down = SrtpKeys.generate(PROFILE)
        self.sender = SrtpSender(self.up)
        self.receiver = SrtpReceiver(self.down)
        self.ssrc = ssrc
        self.ice = IceCredentials(node_ufrag=f"n{name}xx", client_ufrag=f"c{name}yy",
                                  pwd=SecretStr(f"pwd+of+{name}+0123456789abc"))
        self.leg_id = f"leg-{name}"
        self.seq = 0

    def allocate(self, meeting: str = "m1") -> AllocateLeg:
        return AllocateLeg(
            request_id=f"r-{self.leg_id}", leg_id=self.leg_id, meeting_id=meeting,
            participant_id=f"p-{self.leg_id}", ssrc=self.ssrc, ice=self.ice,
            srtp=SrtpParams(profile=PROFILE.value, client_to_node=SecretStr(self.up.to_b64()),
                            node_to_client=SecretStr(self.down.to_b64())),
        )

    def binding(self, pwd: bytes | None = None) -> bytes:
        return build_leg_binding(self.ice.node_ufrag, self.ice.client_ufrag,
                                 pwd or self.pwd)

    @property
    def pwd(self) -> bytes:
        return self.ice.pwd.get_secret_value().encode()

    def rtp(self, payload: bytes) -> bytes:
        self.seq += 1
        return self.sender.protect(build_rtp(payload_type=0, sequence=self.seq,
                                             timestamp=self.seq * 160, ssrc=self.ssrc,
                                             payload=payload))


A_ADDR = ("192.0.2.10", 40000)
B_ADDR = ("198.51.100.7", 50000)


@pytest.fixture
def events() -> list[LegEvent]:
    return []


@pytest.fixture
def engine(events: list[LegEvent]) -> Engine:
    return Engine("node-t", consent_s=30, leg_timeout_s=90, emit=events.append)


def _latched_pair(engine: Engine) -> tuple[Party, Party, FakeSink]:
    a, b, sink = Party("a", 1111), Party("b", 2222), FakeSink()
    assert engine.allocate(a.allocate(), 0.0).ok
    assert engine.allocate(b.allocate(), 0.0).ok
    engine.on_packet(a.binding(), sink, A_ADDR, 1.0)
    engine.on_packet(b.binding(), sink, B_ADDR, 1.0)
    sink.sent.clear()
    return a, b, sink


def test_discovery_probe_answered_with_mapped_address_and_node_name(engine: Engine) -> None:
    """docs/design.md "Discovery probe": XOR-MAPPED-ADDRESS + SOFTWARE naming the node id."""
    sink = FakeSink()
    engine.on_packet(build_discovery_probe(), sink, A_ADDR, 0.0)
    [(reply, to)] = sink.sent
    answer = parse_binding_response(reply)
    assert to == A_ADDR
    assert answer.mapped == Address(*A_ADDR)
    assert answer.software == "node-t"


def test_authenticated_binding_latches_and_answers_with_integrity(
    engine: Engine, events: list[LegEvent]
) -> None:
    """docs/design.md "Media leg": the node authenticates the request and latches the leg."""
    a, sink = Party("a", 1), FakeSink()
    engine.allocate(a.allocate(), 0.0)
    engine.on_packet(a.binding(), sink, A_ADDR, 1.0)
    [(reply, _)] = sink.sent
    assert parse_binding_response(reply, pwd=a.pwd).mapped == Address(*A_ADDR)
    assert engine.legs[a.leg_id].addr == A_ADDR
    assert [(e.event, e.rung) for e in events] == [("latched", "udp/5004")]


def test_bad_integrity_gets_401_and_never_moves_the_latch(engine: Engine) -> None:
    """RFC 5389 §10.1.2: bad MESSAGE-INTEGRITY → 401; docs/design.md "Media leg":
    unauthenticated never latches."""
    a, _b, sink = _latched_pair(engine)
    engine.on_packet(a.binding(pwd=b"wrong-password-xxxxxxx"), sink, ("203.0.113.9", 1), 2.0)
    [(reply, _)] = sink.sent
    assert parse_binding_response(reply).error is not None
    assert parse_binding_response(reply).error[0] == 401  # type: ignore[index]
    assert engine.legs[a.leg_id].addr == A_ADDR
    assert engine.drops == {"stun_bad_integrity": 1}


def test_srtp_is_reprotected_for_the_other_leg_and_sent_to_its_latch(engine: Engine) -> None:
    """docs/design.md "SRTP": authenticate with the sender's context, re-protect for every
    other leg."""
    a, b, sink = _latched_pair(engine)
    engine.on_packet(a.rtp(b"hello from a"), sink, A_ADDR, 2.0)
    [(packet, to)] = sink.sent
    assert to == B_ADDR
    clear = b.receiver.unprotect(packet)
    assert parse_rtp_header(clear).ssrc == a.ssrc
    assert clear.endswith(b"hello from a")
    assert engine.packets_in == 1 and engine.packets_out == 1


def test_fan_out_gives_every_receiver_the_same_packet_under_its_own_keys(
        engine: Engine) -> None:
    """docs/design.md "SRTP" in an SFU meeting of 4: one decrypt, then each receiver but the last
    protects a copy of the clear packet and the last seals it in the inbound buffer
    (wire.srtp open/seal). Every receiver must get the same RTP and RTCP, in member
    order, each under its own keys; a receiver without consent is skipped and counted."""
    parties = [Party(name, 1000 + i) for i, name in enumerate("abcd")]
    sink = FakeSink()
    addresses = [(f"192.0.2.{10 + i}", 40000 + i) for i in range(4)]
    for party, address in zip(parties, addresses, strict=True):
        assert engine.allocate(party.allocate(), 0.0).ok
        engine.on_packet(party.binding(), sink, address, 1.0)
    a, *hearers = parties
    for payload in (b"first", b"second"):
        sink.sent.clear()
        engine.on_packet(a.rtp(payload), sink, addresses[0], 2.0)
        assert [to for _, to in sink.sent] == addresses[1:]
        for (packet, _), hearer in zip(sink.sent, hearers, strict=True):
            clear = hearer.receiver.unprotect(packet)
            assert parse_rtp_header(clear).ssrc == a.ssrc and clear.endswith(payload)
    sink.sent.clear()
    report = a.sender.protect_rtcp(build_rtcp_receiver_report(ssrc=a.ssrc))
    engine.on_packet(report, sink, addresses[0], 2.0)
    assert [hearer.receiver.unprotect_rtcp(packet) for (packet, _), hearer
            in zip(sink.sent, hearers, strict=True)] == [build_rtcp_receiver_report(
                ssrc=a.ssrc)] * 3
    engine.legs[hearers[2].leg_id].consent_lost = True  # the last member: c seals instead
    sink.sent.clear()
    engine.on_packet(a.rtp(b"third"), sink, addresses[0], 3.0)
    assert [to for _, to in sink.sent] == addresses[1:3]
    assert hearers[1].receiver.unprotect(sink.sent[1][0]).endswith(b"third")
    assert engine.drops == {"no_consent": 1}


def test_tampered_srtp_dropped_and_counted_never_forwarded(engine: Engine) -> None:
    """RFC 3711 §3.3: a packet whose authentication tag fails is discarded."""
    a, _b, sink = _latched_pair(engine)
    good = a.rtp(bytes(160))
    engine.on_packet(good[:20] + bytes([good[20] ^ 1]) + good[21:], sink, A_ADDR, 2.0)
    assert sink.sent == [] and engine.drops == {"auth": 1}


def test_replayed_srtp_dropped(engine: Engine) -> None:
    """RFC 3711 §3.3.2: a replayed packet is discarded."""
    a, _b, sink = _latched_pair(engine)
    packet = a.rtp(bytes(160))
    engine.on_packet(packet, sink, A_ADDR, 2.0)
    engine.on_packet(packet, sink, A_ADDR, 2.0)
    assert len(sink.sent) == 1 and engine.drops == {"replay": 1}


def test_srtp_from_an_unlatched_address_is_dropped(engine: Engine) -> None:
    """Symmetric media: only the latched 5-tuple may send on a leg."""
    a, _b, sink = _latched_pair(engine)
    engine.on_packet(a.rtp(bytes(160)), sink, ("203.0.113.9", 1), 2.0)
    assert sink.sent == [] and engine.drops == {"unlatched": 1}


def test_foreign_ssrc_is_dropped(engine: Engine) -> None:
    """docs/design.md "SRTP": SSRCs are assigned by the cloud; a leg may not send another's."""
    a, b, sink = _latched_pair(engine)
    a.ssrc = b.ssrc
    engine.on_packet(a.rtp(bytes(160)), sink, A_ADDR, 2.0)
    assert sink.sent == [] and engine.drops == {"ssrc": 1}


def test_authenticated_binding_from_a_new_address_relatches(
    engine: Engine, events: list[LegEvent]
) -> None:
    """A NAT rebinding: the next authenticated request moves the latch, media follows."""
    a, b, sink = _latched_pair(engine)
    moved = ("192.0.2.10", 40001)
    engine.on_packet(a.binding(), sink, moved, 3.0)
    assert events[-1].event == "relatched"
    sink.sent.clear()
    engine.on_packet(b.rtp(b"x"), sink, B_ADDR, 3.0)
    assert [to for _, to in sink.sent] == [moved]


def test_consent_expiry_stops_sending_and_a_binding_restores_it(
    engine: Engine, events: list[LegEvent]
) -> None:
    """RFC 7675 §5.1: stop sending when consent is older than 30 s."""
    a, b, sink = _latched_pair(engine)
    engine.on_packet(a.binding(), sink, A_ADDR, 20.0)  # a stays fresh
    sink.sent.clear()
    engine.tick(32.0)  # b's consent (t=1) is now 31 s old
    assert [(e.leg_id, e.event) for e in events[-1:]] == [(b.leg_id, "consent_expired")]
    engine.on_packet(a.rtp(b"x"), sink, A_ADDR, 32.0)
    assert sink.sent == [] and engine.drops == {"no_consent": 1}
    engine.on_packet(b.binding(), sink, B_ADDR, 33.0)
    sink.sent.clear()
    engine.on_packet(a.rtp(b"y"), sink, A_ADDR, 33.0)
    assert [to for _, to in sink.sent] == [B_ADDR]


def test_leg_without_consent_is_freed_after_the_timeout(
    engine: Engine, events: list[LegEvent]
) -> None:
    a = Party("a", 1)
    engine.allocate(a.allocate(), 0.0)
    engine.tick(91.0)
    assert a.leg_id not in engine.legs and events[-1].event == "freed"


def test_non_stun_non_rtp_is_dropped_by_demux(engine: Engine) -> None:
    """RFC 7983 §7: bytes outside the STUN, DTLS and RTP/RTCP ranges are dropped."""
    sink = FakeSink()
    for first in (4, 16, 64, 127, 192, 255):
        engine.on_packet(bytes([first]) + bytes(40), sink, A_ADDR, 0.0)
    engine.on_packet(b"", sink, A_ADDR, 0.0)
    assert sink.sent == [] and engine.drops == {"demux": 7}


def test_a_full_node_refuses_legs(events: list[LegEvent]) -> None:
    engine = Engine("n", capacity=1)
    assert engine.allocate(Party("a", 1).allocate(), 0.0).ok
    refused = engine.allocate(Party("b", 2).allocate(), 0.0)
    assert not refused.ok and refused.detail == "node is full"


def test_cascade_legs_count_against_capacity_on_both_ends() -> None:
    """Need: "A cascade leg must count against a node's capacity." A cascade's leg on the
    peer (``allocate_leg`` with ``cascade``) and the one this node dials out
    (``open_cascade``) are legs: they fill the node, its heartbeat's load says so, and a
    participant finds it full. A full node still dials its meeting's cascade: without it a
    full node's meeting could never spread to another node."""
    peer = Engine("peer", capacity=2)
    inbound = Party("cascade", 0).allocate().model_copy(update={"cascade": True})
    assert peer.allocate(Party("a", 1).allocate(), 0.0).ok
    assert peer.allocate(inbound, 0.0).ok
    assert peer.load() == 1.0
    assert peer.allocate(Party("b", 2).allocate(), 0.0).detail == "node is full"
    dialler = Engine("dialler", capacity=2)
    assert dialler.allocate(Party("c", 3).allocate(), 0.0).ok
    assert dialler.allocate(Party("d", 4).allocate(), 0.0).ok
    up, down = SrtpKeys.generate(PROFILE), SrtpKeys.generate(PROFILE)
    dialler.add_outbound_cascade(OpenCascade(
        meeting_id="m1", peer=NodeInfo(id="peer", kind="hybrid", region="r",
                                       address="192.0.2.99", endpoints=[]),
        leg_id="cas-1", ice=IceCredentials(node_ufrag="peerxx", client_ufrag="selfyy",
                                           pwd=SecretStr("cascade+password+0123456789")),
        srtp=SrtpParams(profile=PROFILE.value, client_to_node=SecretStr(up.to_b64()),
                        node_to_client=SecretStr(down.to_b64()))), 0.0)
    assert len(dialler.legs) == 3 and dialler.load() == 1.0
    dialler.release("leg-c")
    dialler.release("leg-d")
    assert dialler.load() == 0.5  # the cascade's leg still counts


def test_keys_never_in_leg_repr(engine: Engine) -> None:
    a = Party("a", 1)
    engine.allocate(a.allocate(), 0.0)
    text = repr(engine.legs[a.leg_id])
    assert a.up.to_b64() not in text and "pwd-of-a" not in text


# ----------------------------------------------------------------- latch ownership
ATTACKER = ("203.0.113.66", 6666)


def test_right_password_with_another_client_ufrag_is_refused(engine: Engine) -> None:
    """docs/design.md "Media leg": USERNAME is "<node_ufrag>:<client_ufrag>" of *this* leg;
    the right password with another client ufrag authenticates nothing (no latch, no answer)."""
    a, sink = Party("a", 1), FakeSink()
    engine.allocate(a.allocate(), 0.0)
    forged = build_leg_binding(a.ice.node_ufrag, "someone-else", a.pwd)
    engine.on_packet(forged, sink, A_ADDR, 1.0)
    assert sink.sent == [] and engine.legs[a.leg_id].sink is None
    assert engine.drops == {"stun_unknown_username": 1}


def test_a_path_with_fresh_consent_is_not_taken_by_another_leg(
    engine: Engine, events: list[LegEvent]
) -> None:
    """docs/design.md "Consent and keepalive": a path latched to a leg with fresh consent is never
    taken over by another leg. The attack: a spoofed source authenticates the attacker's own
    leg with the victim's IP:port; before the fix the victim's leg lost its latch and its
    media was dropped until its next keepalive."""
    a, _b, sink = _latched_pair(engine)
    c = Party("c", 3333)  # the attacker's own leg in the meeting, credentials valid
    assert engine.allocate(c.allocate(), 0.0).ok
    engine.on_packet(c.binding(), sink, A_ADDR, 5.0)  # spoofed: the victim's address
    assert sink.sent == []  # no answer to the victim's address either
    assert engine.legs[a.leg_id].addr == A_ADDR and engine.legs[c.leg_id].sink is None
    assert engine.drops == {"latch_taken": 1} and engine.legs[c.leg_id].drops == {"latch_taken": 1}
    engine.on_packet(a.rtp(b"still mine"), sink, A_ADDR, 5.0)  # the victim's media flows
    assert [to for _, to in sink.sent] == [B_ADDR]
    assert [e.event for e in events if e.leg_id == c.leg_id] == []


def test_a_path_whose_consent_expired_may_be_latched_by_another_leg(engine: Engine) -> None:
    """RFC 7675 §5.1: past 30 s without consent the path has no owner to protect."""
    a, _b, sink = _latched_pair(engine)  # a's consent at t=1
    c = Party("c", 3333)
    engine.allocate(c.allocate(), 0.0)
    engine.on_packet(c.binding(), sink, A_ADDR, 31.5)
    assert engine.legs[c.leg_id].addr == A_ADDR and engine.legs[a.leg_id].sink is None


def test_a_replayed_binding_from_another_path_moves_nothing(
    engine: Engine, events: list[LegEvent]
) -> None:
    """RFC 5389 §10.1.1 gives MESSAGE-INTEGRITY no replay protection, the node must: the
    client's exact request replayed from another address is refused and counted; before the
    fix it moved the latch and the replayer got the media."""
    a, b, sink = Party("a", 1111), Party("b", 2222), FakeSink()
    engine.allocate(a.allocate(), 0.0)
    engine.allocate(b.allocate(), 0.0)
    captured = a.binding()
    engine.on_packet(captured, sink, A_ADDR, 1.0)
    engine.on_packet(b.binding(), sink, B_ADDR, 1.0)
    sink.sent.clear()
    engine.on_packet(captured, sink, ATTACKER, 40.0)  # even after a's consent went stale
    assert sink.sent == [] and engine.legs[a.leg_id].addr == A_ADDR
    assert engine.drops == {"stun_replay": 1}
    engine.on_packet(b.rtp(b"to a"), sink, B_ADDR, 2.0)
    assert [to for _, to in sink.sent] == [A_ADDR]


def test_a_retransmission_on_the_same_path_is_answered_again(engine: Engine) -> None:
    """RFC 5389 §7.3.1: a retransmitted request (same transaction id) gets its answer."""
    a, sink = Party("a", 1), FakeSink()
    engine.allocate(a.allocate(), 0.0)
    request = a.binding()
    engine.on_packet(request, sink, A_ADDR, 1.0)
    engine.on_packet(request, sink, A_ADDR, 1.5)
    assert len(sink.sent) == 2 and engine.drops == {}


def test_transaction_memory_is_bounded_per_leg(engine: Engine) -> None:
    """Bounded memory: a leg keeps only its recent transaction ids."""
    a, sink = Party("a", 1), FakeSink()
    engine.allocate(a.allocate(), 0.0)
    for i in range(SEEN_TRANSACTIONS + 50):
        engine.on_packet(a.binding(), sink, A_ADDR, 1.0 + i)
    assert len(engine.legs[a.leg_id].seen) == SEEN_TRANSACTIONS
