"""ICE-lite on the node, sans I/O (``wire.ice_lite``): nomination, consent, roles, credentials.

Fake clock throughout; the engine tests at the end use fake sinks, no sockets.
"""

from __future__ import annotations

import struct

import pytest
from pydantic import SecretStr, ValidationError

from media_node.engine import Engine
from tests.unit.test_engine import FakeSink, Party
from wire.ice_lite import (
    ICE_CHARS,
    NO_ICE_ATTRIBUTES,
    PASSWORD_MIN,
    UFRAG_MIN,
    CheckAttributes,
    IceLite,
    candidate_priority,
    local_priority,
    new_password,
    new_ufrag,
    pair_priority,
    read_check_attributes,
)
from wire.leg_client import LegClient
from wire.models import IceCredentials, LegEvent
from wire.stun import (
    Attr,
    Class,
    Method,
    build_leg_binding,
    build_leg_binding_response,
    encode_message,
    parse_binding_response,
)
from wire.transports import LADDER, NODE_RUNGS, RungName

HIGH = local_priority(RungName.UDP_5004)
LOW = local_priority(RungName.UDP_33434)
PEER = candidate_priority(110, 0xFFFF)  # what a controlling agent puts in PRIORITY
NOMINATE = CheckAttributes(priority=PEER, use_candidate=True, controlling=7)
CHECK = CheckAttributes(priority=PEER, controlling=7)
CLIENT = ("192.0.2.10", 40000)


# ----------------------------------------------------------------------------- priorities


def test_host_candidate_priority_is_the_rfc_formula() -> None:
    """RFC 8445 §5.1.2.1: 2^24 × 126 + 2^8 × 65535 + (256 − 1) for a host candidate."""
    assert candidate_priority(126, 65535, 1) == 2130706431
    with pytest.raises(ValueError):
        candidate_priority(127, 0)


def test_pair_priority_is_the_rfc_formula() -> None:
    """RFC 8445 §6.1.2.3: 2^32 × MIN(G, D) + 2 × MAX(G, D) + (G > D ? 1 : 0)."""
    assert pair_priority(5, 3) == (3 << 32) + 10 + 1
    assert pair_priority(3, 5) == (3 << 32) + 10
    assert pair_priority(PEER, HIGH) > pair_priority(PEER, LOW)  # the ladder's order


def test_the_nodes_candidates_follow_the_ladder() -> None:
    """RFC 8445 §5.1.2.1: one host type preference, a unique local preference per rung, in
    the ladder's order; every rung a node can listen on has one."""
    ladder = [local_priority(r.name) for r in LADDER]
    assert ladder == sorted(ladder, reverse=True) and len(set(ladder)) == len(ladder)
    every = [local_priority(r.name) for r in NODE_RUNGS]
    assert every == sorted(every, reverse=True) and len(set(every)) == len(every)
    assert {r.name for r in NODE_RUNGS} == set(RungName) and set(ladder) <= set(every)


def test_a_check_on_the_content_rung_has_a_priority() -> None:
    """Defect pinned down: before, the node's priorities covered the media ladder only, and
    an authenticated check on its TCP 33434 listener (content's second rung) raised
    KeyError in the engine; now tcp/33434 ranks between tcp/5004 and tls/443."""
    assert local_priority(RungName.TCP_5004) > local_priority(RungName.TCP_33434) > \
        local_priority(RungName.TLS_443)


# ----------------------------------------------------------------------------- nomination


def test_aggressive_nomination_selects_the_highest_priority_pair() -> None:
    """RFC 8445 §8.1.1: with several nominated pairs, "use the pairs with the highest
    priority". Defect: the node moved media to 33434, whose nominating check came 20 ms
    after the one on 5004; the pair of 5004 keeps media whatever the order."""
    ice: IceLite[str] = IceLite()
    first = ice.receive_check("5004", NOMINATE, HIGH, 0.0)
    later = ice.receive_check("33434", NOMINATE, LOW, 0.02)
    assert first.answer and first.selected and first.nominated
    assert later.answer and not later.selected and later.nominated
    assert ice.path == later.path == "5004"


def test_the_higher_priority_pair_wins_even_when_nominated_second() -> None:
    """RFC 8445 §8.1.1: the order the nominations came in does not matter."""
    ice: IceLite[str] = IceLite()
    ice.receive_check("33434", NOMINATE, LOW, 0.0)
    assert ice.receive_check("5004", NOMINATE, HIGH, 0.02).selected
    assert ice.path == "5004"


def test_later_checks_on_other_pairs_are_answered_but_do_not_move_media() -> None:
    """RFC 8445 §8.1.2: after nomination an agent "MUST continue to respond" to checks on
    the other pairs; §12.1: data goes on the selected pair only (a browser keeps checking
    its backup pairs)."""
    ice: IceLite[str] = IceLite()
    ice.receive_check("33434", NOMINATE, LOW, 0.0)
    for t in (1.0, 2.0, 3.0):
        outcome = ice.receive_check("5004", CHECK, HIGH, t)
        assert outcome.answer and not outcome.selected and outcome.path == "33434"
    assert ice.counts["backup_checks"] == 3
    assert ice.consent_fresh("5004", 3.0)  # RFC 7675: consent is per pair


def test_before_any_nomination_the_latest_valid_pair_carries_media() -> None:
    """RFC 8445 §12.1.1: a lite agent may send on a valid pair before one is selected, so
    a client that never nominates keeps working: the latest check's pair carries media."""
    ice: IceLite[str] = IceLite()
    assert ice.receive_check("a", NO_ICE_ATTRIBUTES, HIGH, 0.0).selected
    assert ice.receive_check("b", NO_ICE_ATTRIBUTES, LOW, 1.0).selected
    assert ice.path == "b"


def test_a_nomination_takes_over_from_an_unnominated_path() -> None:
    """RFC 8445 §7.3.2, §8.2: once nominated, the pair is selected, even over a valid pair
    of higher priority that was never nominated."""
    ice: IceLite[str] = IceLite()
    ice.receive_check("5004", CHECK, HIGH, 0.0)
    assert ice.receive_check("33434", NOMINATE, LOW, 1.0).selected
    assert not ice.receive_check("5004", CHECK, HIGH, 2.0).selected


def test_between_equal_priorities_the_latest_nomination_wins() -> None:
    """A NAT rebinding: the same local candidate and PRIORITY, a new client port; the
    latest nomination is where the client is now."""
    ice: IceLite[str] = IceLite()
    ice.receive_check("old-port", NOMINATE, HIGH, 0.0)
    assert ice.receive_check("new-port", NOMINATE, HIGH, 5.0).selected
    assert not ice.receive_check("old-port", CHECK, HIGH, 6.0).selected


def test_a_nominated_pair_without_consent_gives_way() -> None:
    """RFC 7675 §5.1: no authenticated check on a pair for the consent time-out is no
    consent to send there; the next valid check takes media."""
    ice: IceLite[str] = IceLite(consent_s=30.0)
    ice.receive_check("5004", NOMINATE, HIGH, 0.0)
    assert not ice.receive_check("33434", CHECK, LOW, 30.0).selected
    assert ice.receive_check("33434", CHECK, LOW, 30.5).selected


def test_a_forgotten_path_lets_the_next_check_latch() -> None:
    """A closed TCP connection takes its pair with it: the client's next check, on a new
    connection and not nominating, carries media again (RFC 8445 §12.1.1)."""
    ice: IceLite[str] = IceLite()
    ice.receive_check("conn-1", NOMINATE, HIGH, 0.0)
    ice.forget("conn-1")
    assert ice.path is None
    assert ice.receive_check("conn-2", NO_ICE_ATTRIBUTES, HIGH, 1.0).selected


def test_the_valid_list_is_bounded() -> None:
    """Memory per leg stays bounded: the least recently checked pair goes first."""
    ice: IceLite[int] = IceLite()
    ice.receive_check(0, NOMINATE, HIGH, 0.0)
    for port in range(1, 40):
        ice.receive_check(port, CHECK, LOW, port / 10)
    assert len(ice.pairs) == 16 and ice.path == 0


# ----------------------------------------------------------------------------- roles


def test_a_controlled_peer_nominates_nothing_and_gets_no_487() -> None:
    """RFC 8445 §7.1.2: only the controlling agent nominates. Role-conflict repair and its
    487 (§7.3.1.1) are among the "Additional Procedures for Full Implementations" (§7.3.1):
    a lite agent, always controlled (§6.1.1), answers the check and counts it."""
    ice: IceLite[str] = IceLite()
    ice.receive_check("5004", NOMINATE, HIGH, 0.0)
    odd = CheckAttributes(priority=PEER, use_candidate=True, controlled=9)
    outcome = ice.receive_check("33434", odd, LOW, 1.0)
    assert outcome.answer and not outcome.nominated and not ice.nominated("33434")
    assert ice.path == "5004" and ice.counts["controlled_peer"] == 1


def test_a_controlling_peer_is_what_a_lite_agent_expects() -> None:
    """RFC 8445 §7.3.1.1: "controlled role and the ICE-CONTROLLING attribute ... there is no
    conflict": answered, nomination taken."""
    ice: IceLite[str] = IceLite()
    outcome = ice.receive_check("5004", NOMINATE, HIGH, 0.0)
    assert outcome.answer and outcome.nominated and "controlled_peer" not in ice.counts


# ----------------------------------------------------------------------------- the check


def test_check_attributes_read_back_from_a_built_check() -> None:
    """RFC 8445 §7.1, §16.1: PRIORITY (32 bits), USE-CANDIDATE (empty), ICE-CONTROLLING
    (64 bits), as a controlling agent sends them."""
    request = build_leg_binding("node", "cli", b"p" * 22, priority=PEER, use_candidate=True,
                          controlling=2**63 + 5)
    assert read_check_attributes(request) == CheckAttributes(PEER, True, 2**63 + 5, None)
    assert read_check_attributes(build_leg_binding("node", "cli", b"p" * 22)) == NO_ICE_ATTRIBUTES


def test_attributes_after_message_integrity_do_not_count() -> None:
    """RFC 5389 §15.4: attributes after MESSAGE-INTEGRITY are ignored; one added on the path
    (USE-CANDIDATE after the HMAC) nominates nothing."""
    request = encode_message(Method.BINDING, Class.REQUEST, bytes(12),
                             [(Attr.USERNAME, b"node:cli")], integrity_key=b"p" * 22,
                             fingerprint=False)
    tampered = bytearray(request + struct.pack("!HH", Attr.USE_CANDIDATE, 0))
    tampered[2:4] = (len(tampered) - 20).to_bytes(2, "big")
    assert read_check_attributes(bytes(tampered)) == NO_ICE_ATTRIBUTES


def test_a_truncated_check_reads_as_no_attributes() -> None:
    """A reader of network bytes never raises."""
    request = build_leg_binding("node", "cli", b"p" * 22, priority=PEER, use_candidate=True)
    for cut in range(len(request)):
        read_check_attributes(request[:cut])


# ----------------------------------------------------------------------------- credentials


def test_minted_credentials_are_ice_chars_of_rfc_lengths() -> None:
    """RFC 8839 §5.4: ufrag = 4*256ice-char, password = 22*256ice-char, ice-char = ALPHA /
    DIGIT / "+" / "/"; RFC 8445 §5.3: at least 24 and 128 random bits. Defect: passwords from
    ``token_urlsafe`` held "-" or "_" (3 of 6 legs)."""
    for _ in range(1000):
        ice = IceCredentials.generate()
        pwd = ice.pwd.get_secret_value()
        for ufrag in (ice.node_ufrag, ice.client_ufrag):
            assert set(ufrag) <= set(ICE_CHARS) and UFRAG_MIN <= len(ufrag) <= 256
            assert 6 * len(ufrag) >= 24  # 64 symbols: 6 bits each
        assert set(pwd) <= set(ICE_CHARS) and PASSWORD_MIN <= len(pwd) <= 256
        assert 6 * len(pwd) >= 128
        assert IceCredentials.model_validate_json(ice.model_dump_json()) == ice


def test_generators_refuse_lengths_outside_the_rfc() -> None:
    """RFC 8839 §5.4: 4-256 and 22-256 ice-chars."""
    with pytest.raises(ValueError):
        new_ufrag(3)
    with pytest.raises(ValueError):
        new_password(21)


@pytest.mark.parametrize("ufrag", ["ab-cd", "ab_cd", "ab:cd", "abc"])
def test_models_refuse_ufrags_that_are_not_ice_chars(ufrag: str) -> None:
    """RFC 8839 §5.4: a ufrag is 4 or more ice-chars; "-" and "_" (base64url) are not."""
    with pytest.raises(ValidationError, match="client_ufrag"):
        IceCredentials(node_ufrag="abcd", client_ufrag=ufrag, pwd=SecretStr("p" * 22))


@pytest.mark.parametrize("pwd", ["p" * 21 + "-", "p" * 21 + "_", "p" * 21])
def test_models_refuse_passwords_that_are_not_ice_chars(pwd: str) -> None:
    """RFC 8839 §5.4: password = 22*256ice-char."""
    with pytest.raises(ValidationError, match="pwd"):
        IceCredentials(node_ufrag="abcd", client_ufrag="efgh", pwd=SecretStr(pwd))


# ----------------------------------------------------------------------------- the engine


def _ice_party(engine: Engine, name: str, ssrc: int) -> Party:
    party = Party(name, ssrc)
    assert engine.allocate(party.allocate(), 0.0).ok
    return party


def _check(party: Party, *, nominate: bool) -> bytes:
    return build_leg_binding(party.ice.node_ufrag, party.ice.client_ufrag, party.pwd,
                       priority=PEER, use_candidate=nominate, controlling=12345)


def test_engine_media_goes_to_the_nominated_pair_not_the_last_check() -> None:
    """RFC 8445 §8.1.1, §12.1. Defect: with USE-CANDIDATE on every check, a check on 33434
    20 ms after the one on 5004 moved the latch there; 0 of 50 packets reached the client
    on the pair it uses until its next consent check."""
    events: list[LegEvent] = []
    engine = Engine("node-t", emit=events.append)
    udp5004, udp33434 = FakeSink(RungName.UDP_5004), FakeSink(RungName.UDP_33434)
    a, b = _ice_party(engine, "a", 1111), _ice_party(engine, "b", 2222)
    engine.on_packet(b.binding(), udp5004, ("198.51.100.7", 50000), 0.0)
    engine.on_packet(_check(a, nominate=True), udp5004, CLIENT, 1.0)
    engine.on_packet(_check(a, nominate=True), udp33434, CLIENT, 1.02)
    [(answer, to)] = udp33434.sent  # the later check is answered ...
    assert to == CLIENT and parse_binding_response(answer, pwd=a.pwd).error is None
    udp5004.sent.clear()
    for _ in range(50):
        engine.on_packet(b.rtp(bytes(160)), udp5004, ("198.51.100.7", 50000), 1.1)
    assert len(udp5004.sent) == 50 and len(udp33434.sent) == 1  # ... media stays on 5004
    assert [e.event for e in events if e.leg_id == a.leg_id] == ["latched"]


def test_engine_backup_checks_keep_their_own_consent_only() -> None:
    """RFC 7675 §5.1 per pair: checks on a backup pair do not keep the selected pair's
    consent; the leg's consent expires as before when the selected pair goes quiet."""
    events: list[LegEvent] = []
    engine = Engine("node-t", consent_s=30, leg_timeout_s=90, emit=events.append)
    udp5004, udp33434 = FakeSink(RungName.UDP_5004), FakeSink(RungName.UDP_33434)
    a = _ice_party(engine, "a", 1111)
    engine.on_packet(_check(a, nominate=True), udp5004, CLIENT, 0.0)
    for t in (10.0, 20.0, 30.0):
        engine.on_packet(_check(a, nominate=False), udp33434, CLIENT, t)
    engine.tick(31.0)
    assert events[-1].event == "consent_expired"
    assert engine.legs[a.leg_id].sink is udp5004


def test_engine_pinhole_client_without_nomination_still_latches_latest() -> None:
    """Pinhole's own client before it nominates (docs/design.md "Media leg"): the latest
    authenticated request moves the latch, as a NAT rebinding needs."""
    engine = Engine("node-t")
    sink = FakeSink()
    a = _ice_party(engine, "a", 1)
    engine.on_packet(a.binding(), sink, CLIENT, 0.0)
    engine.on_packet(a.binding(), sink, ("192.0.2.10", 40001), 1.0)
    assert engine.legs[a.leg_id].addr == ("192.0.2.10", 40001)


def test_engine_a_closed_connection_forgets_its_nominated_pair() -> None:
    """A nominated TCP connection that closes leaves no selected pair: the client's next
    connection latches with a plain check."""
    engine = Engine("node-t")
    first, second = FakeSink(RungName.TCP_5004), FakeSink(RungName.TCP_5004)
    a = _ice_party(engine, "a", 1)
    engine.on_packet(_check(a, nominate=True), first, CLIENT, 0.0)
    engine.sink_closed(first)
    engine.on_packet(a.binding(), second, ("192.0.2.10", 40001), 1.0)
    assert engine.legs[a.leg_id].sink is second


def test_leg_client_nominates_the_path_it_chose() -> None:
    """RFC 8445 §8.1.1 (regular nomination): Pinhole's client latches without USE-CANDIDATE
    (a transport that loses a race takes nothing), then ``check_now`` nominates its path,
    and its consent checks keep nominating it (ICE-CONTROLLING: it is the controlling
    agent)."""
    leg = LegClient("node", "cli", b"p" * 22, uniform=lambda lo, hi: lo)
    leg.start(0.0)
    [latch] = leg.datagrams_to_send()
    assert read_check_attributes(latch) == NO_ICE_ATTRIBUTES
    engine_answer(leg, latch, 0.01)
    leg.check_now(1.0)
    [nominating] = leg.datagrams_to_send()
    check = read_check_attributes(nominating)
    assert check.use_candidate and check.controlling is not None and check.priority
    engine_answer(leg, nominating, 1.01)
    leg.handle_timer(1.01 + 3.2)
    [consent] = leg.datagrams_to_send()
    assert read_check_attributes(consent).use_candidate


def engine_answer(leg: LegClient, request: bytes, now: float) -> None:
    """The node's answer to ``request``, given to the leg client."""
    reply = build_leg_binding_response(request[8:20], ("192.0.2.10", 40000), b"p" * 22)
    assert leg.receive(reply, now)
