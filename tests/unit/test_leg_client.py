"""The sans-I/O leg client on a fake clock: RFC 8489 §6.2.1 retransmission, latch, RFC 7675
consent schedule and expiry, forged answers, the certificate pin."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest

from wire.address import Address
from wire.leg_client import (
    ConsentExpired,
    ConsentRefreshed,
    Latched,
    LatchFailed,
    LegClient,
    LegConfig,
    LegDriver,
    LegEvent,
    LegState,
    PinMismatch,
)
from wire.stun import (
    build_error_response,
    build_leg_binding_response,
    transaction_id_of,
    validate_request,
)
from wire.tls import cert_fingerprint, issue

PWD = b"leg-password-0123456789"
MAPPED = Address("198.51.100.7", 40000)


def answer(request: bytes, pwd: bytes = PWD) -> bytes:
    """What the node answers to an authenticated leg request."""
    result = validate_request(request, lambda ufrag: PWD if ufrag == "nod" else None)
    assert result.transaction_id is not None and result.node_ufrag == "nod"
    return build_leg_binding_response(result.transaction_id, MAPPED, pwd, "node-a")


def client(**config: object) -> LegClient:
    return LegClient("nod", "cli", PWD, config=LegConfig(**config),  # type: ignore[arg-type]
                     uniform=lambda lo, hi: (lo + hi) / 2)


def run_until(leg: LegClient, end: float) -> list[tuple[float, bytes]]:
    """Fire every timer up to ``end``; what was sent and when."""
    sent: list[tuple[float, bytes]] = []
    while (at := leg.get_timer()) is not None and at <= end:
        leg.handle_timer(at)
        sent += [(at, d) for d in leg.datagrams_to_send()]
    return sent


def test_latch_request_is_the_authenticated_leg_binding() -> None:
    """docs/design.md "Media leg": USERNAME node:client, MESSAGE-INTEGRITY(pwd); the node's
    validator authenticates it, and its answer latches the leg with the RTT measured."""
    leg = client()
    leg.start(10.0)
    [request] = leg.datagrams_to_send()
    assert leg.state.name == "LATCHING"
    assert leg.receive(answer(request), 10.025)
    event = leg.next_event()
    assert isinstance(event, Latched) and event.mapped == MAPPED
    assert event.rtt_ms == pytest.approx(25.0)
    assert leg.state == LegState.LATCHED and leg.mapped == MAPPED


def test_udp_retransmission_follows_rfc8489_section_6_2_1() -> None:
    """RFC 8489 §6.2.1: with RTO 500 ms and Rc=7, requests at 0, 500, 1500, 3500, 7500,
    15500 and 31500 ms; with Rm=16 the client gives up at 39500 ms. Every retransmission
    repeats the same transaction."""
    leg = client()
    leg.start(0.0)
    first = leg.datagrams_to_send()
    sent = run_until(leg, 100.0)
    assert [round(at, 3) for at, _ in sent] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert {d for _, d in sent} == set(first)
    assert leg.next_event() == LatchFailed("no authenticated answer after 7 requests")
    assert leg.state is LegState.FAILED and leg.get_timer() is None


def test_latch_timeout_bounds_the_transaction_for_a_ladder() -> None:
    """A transport ladder cannot wait 39.5 s per rung: ``latch_timeout_s`` ends it."""
    leg = client(rto_s=0.1, rto_max_s=1.0, latch_timeout_s=2.0)
    leg.start(0.0)
    leg.datagrams_to_send()
    sent = run_until(leg, 10.0)
    assert [round(at, 3) for at, _ in sent] == [0.1, 0.3, 0.7, 1.5]
    assert leg.next_event() == LatchFailed("no authenticated answer within 2.0 s")


def test_reliable_transport_sends_once() -> None:
    """RFC 8489 §6.2.2: over TCP/TLS the request is not retransmitted."""
    leg = client(reliable=True, latch_timeout_s=3.0)
    leg.start(0.0)
    assert len(leg.datagrams_to_send()) == 1
    assert run_until(leg, 10.0) == []
    assert isinstance(leg.next_event(), LatchFailed)


def test_answer_after_retransmission_gives_no_rtt() -> None:
    """Karn: an answer to a retransmitted request cannot say which one it answers."""
    leg = client()
    leg.start(0.0)
    [request] = leg.datagrams_to_send()
    run_until(leg, 0.6)
    leg.receive(answer(request), 0.7)
    event = leg.next_event()
    assert isinstance(event, Latched) and event.rtt_ms is None


def test_forged_or_unexpected_answers_never_latch() -> None:
    """docs/design.md: "Unauthenticated packets never move a latch": an answer keyed with another
    password, or for a transaction never sent, is dropped and counted."""
    leg = client()
    leg.start(0.0)
    [request] = leg.datagrams_to_send()
    assert leg.receive(answer(request, pwd=b"someone-else-password"), 0.01)
    other = bytearray(answer(request))
    other[8:20] = bytes(12)
    assert leg.receive(bytes(other), 0.01)
    assert leg.receive(b"\x00\x01", 0.01)
    assert leg.next_event() is None and leg.state is LegState.LATCHING
    assert leg.drops == {"stun_unauthenticated": 1, "stun_unexpected": 1, "stun_short": 1}
    assert leg.receive(answer(request), 0.02)  # the real answer still latches
    assert isinstance(leg.next_event(), Latched)


def test_srtp_is_not_taken_as_stun() -> None:
    """RFC 7983 §7: a first byte of 128-191 is RTP/RTCP; the caller handles it."""
    assert not client().receive(b"\x80" + bytes(20), 0.0)


def test_error_response_fails_the_latch_with_its_code() -> None:
    leg = client()
    leg.start(0.0)
    [request] = leg.datagrams_to_send()
    leg.receive(build_error_response(transaction_id_of(request), 401, "Unauthorized"), 0.01)
    assert leg.next_event() == LatchFailed("the peer refused the leg: 401 Unauthorized", 401,
                                             "Unauthorized")


def latched(**config: object) -> LegClient:
    leg = client(**config)
    leg.start(0.0)
    [request] = leg.datagrams_to_send()
    leg.receive(answer(request), 0.0)
    assert isinstance(leg.next_event(), Latched)
    return leg


def test_consent_checks_are_randomized_around_4_s() -> None:
    """RFC 7675 §5.1: a check about every few seconds (4 s here, under RFC 7675's 5 s so
    that the randomized gap stays under a 5 s firewall idle timeout), the interval drawn
    uniformly from 0.8 to 1.2 times it; each check is a new transaction (a fresh
    transaction id)."""
    draws: list[tuple[float, float]] = []

    def uniform(lo: float, hi: float) -> float:
        draws.append((lo, hi))
        return hi if len(draws) % 2 else lo

    leg = LegClient("nod", "cli", PWD, uniform=uniform)
    leg.start(0.0)
    [request] = leg.datagrams_to_send()
    leg.receive(answer(request), 0.0)
    assert isinstance(leg.next_event(), Latched)
    times: list[float] = []
    ids: set[bytes] = set()
    for _ in range(4):
        at = leg.get_timer()
        assert at is not None
        leg.handle_timer(at)
        for check in leg.datagrams_to_send():
            times.append(at)
            ids.add(transaction_id_of(check))
            leg.receive(answer(check), at)
    assert draws[0] == pytest.approx((3.2, 4.8))
    assert times == pytest.approx([4.8, 8.0, 12.8, 16.0])
    assert len(ids) == 4 and leg.checks_sent == 4
    assert all(isinstance(e, ConsentRefreshed) for e in iter(leg.next_event, None))


def test_consent_lost_after_the_timeout_and_then_silence() -> None:
    """RFC 7675 §5.1: no authenticated answer for 30 s is consent lost; it is an event, and
    the client stops sending (the caller moves the leg)."""
    leg = latched(consent_timeout_s=12.0)
    sent = run_until(leg, 100.0)
    assert [round(at, 3) for at, _ in sent] == [4.0, 8.0]
    assert leg.next_event() == ConsentExpired(12.0, 0.0)
    assert leg.state is LegState.CONSENT_LOST and leg.get_timer() is None


def test_answered_checks_keep_consent() -> None:
    leg = latched(consent_timeout_s=12.0)
    for _ in range(6):
        at = leg.get_timer()
        assert at is not None
        leg.handle_timer(at)
        for check in leg.datagrams_to_send():
            leg.receive(answer(check), at + 0.01)
    assert leg.state is LegState.LATCHED
    assert not any(isinstance(e, ConsentExpired) for e in iter(leg.next_event, None))


def test_check_now_takes_consent_back() -> None:
    """A lost leg answered again (an immediate check) is latched again."""
    leg = latched(consent_timeout_s=6.0)
    run_until(leg, 20.0)
    assert isinstance(leg.next_event(), ConsentExpired)
    leg.check_now(21.0)
    [check] = leg.datagrams_to_send()
    leg.receive(answer(check), 21.01)
    assert isinstance(leg.next_event(), ConsentRefreshed) and leg.state is LegState.LATCHED


def test_closed_client_sends_nothing() -> None:
    leg = latched()
    leg.close()
    assert leg.get_timer() is None and leg.datagrams_to_send() == []


def test_certificate_pin() -> None:
    """docs/design.md: TLS media checks the node's published fingerprint; a re-signing proxy gets
    the message that says what to exempt."""
    now = datetime.datetime.now(datetime.UTC)
    good, bad = issue(None, ["192.0.2.1"], now), issue(None, ["192.0.2.1"], now)
    der_good, der_bad = (_der(good.cert_pem), _der(bad.cert_pem))
    leg = LegClient("nod", "cli", PWD, expected_fingerprint=cert_fingerprint(good.cert_pem),
                    peer_name="media node n1", peer_domains=["192.0.2.1"])
    leg.check_certificate(der_good)
    with pytest.raises(PinMismatch,
                       match=r"TLS inspection of .*: media node n1 presented certificate"):
        leg.check_certificate(der_bad)


def _der(pem: bytes) -> bytes:
    import ssl

    return ssl.PEM_cert_to_DER_cert(pem.decode())


class FakeScheduler:
    """A fake clock and ``call_later``: the driver's one timer, fired by the test."""

    def __init__(self) -> None:
        self.now = 0.0
        self.armed: list[tuple[float, Callable[[], None], FakeTimer]] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer()
        self.armed.append((self.now + delay, callback, timer))
        return timer

    def advance_to_next(self) -> None:
        live = [a for a in self.armed if not a[2].cancelled]
        at, callback, timer = min(live, key=lambda a: a[0])
        self.armed.remove((at, callback, timer))
        self.now = at
        callback()


class FakeTimer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def test_driver_keeps_exactly_one_timer_and_delivers_events() -> None:
    """The adapters' shape (aioquic): one timer re-armed at ``get_timer()`` after every call,
    datagrams sent, events handed on; a retransmission fires from the timer alone."""
    sched = FakeScheduler()
    sent: list[bytes] = []
    events: list[LegEvent] = []
    leg = client(rto_s=0.1, consent_interval_s=5.0)
    driver = LegDriver(leg, sent.append, events.append, clock=lambda: sched.now,
                       call_later=sched.call_later)
    driver.start()
    assert len(sent) == 1 and len([a for a in sched.armed if not a[2].cancelled]) == 1
    sched.advance_to_next()  # RTO: the same request again
    assert sent == [sent[0], sent[0]]
    assert driver.receive(answer(sent[0]))
    assert [type(e) for e in events] == [Latched]
    live = [a for a in sched.armed if not a[2].cancelled]
    assert len(live) == 1 and live[0][0] == pytest.approx(0.1 + 5.0)
    driver.close()
    assert not [a for a in sched.armed if not a[2].cancelled]
