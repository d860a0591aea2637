"""The client side of a media leg, sans I/O: latch, consent, keepalive, certificate pin.

One object per leg and transport, in the shape of aioquic's connection: the
caller passes ``now`` to :meth:`LegClient.start`, :meth:`LegClient.receive`
and :meth:`LegClient.handle_timer`, arms one timer at :meth:`get_timer`,
sends what :meth:`datagrams_to_send` returns and reads
:meth:`next_event`. It never reads a clock, opens a socket or sleeps, so a
test drives it with a fake clock. A participant's client and a node opening a
cascade (the peer node's "client") both use it, through :class:`LegDriver`,
which takes the caller's clock and ``call_later`` and so imports no I/O.

- Latch (docs/design.md "Media leg"): a Binding Request with USERNAME
  ``"<node_ufrag>:<client_ufrag>"``, MESSAGE-INTEGRITY keyed by ``pwd``,
  FINGERPRINT. Over UDP it is retransmitted as RFC 8489 §6.2.1 says: first
  after RTO, the interval doubling each time, at most Rc (7) requests, then
  Rm × RTO (16) for the last answer; the caller's ``latch_timeout_s`` bounds
  the whole transaction so a transport ladder moves on quickly. Over TCP/TLS
  (RFC 8489 §6.2.2) the request is sent once. Only a response whose
  MESSAGE-INTEGRITY verifies with ``pwd`` counts: anything else is dropped
  and counted, and never latches.
- Consent and keepalive (RFC 7675 §5.1): once latched, a consent check (a new
  Binding transaction, a fresh transaction id each time) every
  ``consent_interval_s`` (4 s: RFC 7675's 5 s basic period, randomized, leaves
  gaps up to 6 s, too long for a firewall that closes a pinhole after 5 s
  idle), each interval drawn uniformly from 0.8 to 1.2 times it so that legs do
  not synchronise. The same request keeps a
  listening participant's NAT pinhole open (seed: the pinhole "is usually
  closed after 30 seconds if no packets are sent from inside of the
  network"). No authenticated answer for ``consent_timeout_s`` (RFC 7675:
  30 s) is consent lost: :class:`ConsentExpired`, after which nothing more
  is sent; the caller moves the leg (asks the cloud to reassign it).
- Nomination (RFC 8445 §8.1.1, regular nomination): the latch request and
  the checks before :meth:`LegClient.check_now` carry no USE-CANDIDATE, so a
  transport that loses a race never takes the leg at a node; ``check_now``
  nominates the path (USE-CANDIDATE, PRIORITY, ICE-CONTROLLING: the client is
  the controlling agent, the node the lite one), and every later consent check
  on it nominates it again, so a NAT that rebinds the client's port moves
  the node's selected pair along (``wire.ice_lite``: equal priority, the
  latest nomination wins).
- Certificate pin: over TLS the peer's certificate must be the one the node
  list published (:meth:`check_certificate`), else :class:`PinMismatch`.
"""

from __future__ import annotations

import random
import secrets
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Final, Protocol

from wire.address import Address
from wire.errors import StunError, WireError
from wire.ice_lite import PEER_REFLEXIVE_PREFERENCE, candidate_priority
from wire.stun import (
    build_leg_binding,
    new_transaction_id,
    parse_binding_response,
)
from wire.tls import check_pins

#: RFC 8489 §6.2.1: "RTO ... SHOULD be ... 500 ms" for an unknown path; configurable.
DEFAULT_RTO_S: Final = 0.5
#: RFC 8489 §6.2.1: Rc, the number of requests sent, and Rm, the last wait in RTOs.
RC: Final = 7
RM: Final = 16
#: RFC 8489 §6.2.2: a transaction over a reliable transport times out after Ti = 39.5 s.
TI_S: Final = 39.5
#: RFC 7675 §5.1 (and docs/design.md "Consent and keepalive"): a check about every 5 s ...
CONSENT_INTERVAL_S: Final = 4.0
#: ... randomized to 0.8-1.2 times the interval, ...
CONSENT_JITTER: Final = 0.2
#: ... and consent is lost 30 s after the last authenticated answer.
CONSENT_TIMEOUT_S: Final = 30.0
#: RFC 8445 §7.1.1: a check's PRIORITY is its local candidate's, with the peer-reflexive
#: type preference (one host address, one component)
CHECK_PRIORITY: Final = candidate_priority(PEER_REFLEXIVE_PREFERENCE, 0xFFFF)


class PinMismatch(WireError):
    """The peer's TLS certificate is not the one the node list published."""

    def __init__(self, message: str, *, seen: str, expected: str) -> None:
        super().__init__(message)
        self.seen, self.expected = seen, expected


class LegState(IntEnum):
    IDLE = 0
    LATCHING = 1
    LATCHED = 2
    FAILED = 3  # the latch got no answer in time, or the peer refused it
    CONSENT_LOST = 4


@dataclass(frozen=True, slots=True)
class Latched:
    """The peer answered the latch: the leg is up on this transport."""

    at: float
    rtt_ms: float | None  # None when the answer followed a retransmission (Karn)
    mapped: Address | None


@dataclass(frozen=True, slots=True)
class ConsentRefreshed:
    """An authenticated answer to a consent check (RFC 7675 §5.1)."""

    at: float
    rtt_ms: float
    mapped: Address | None


@dataclass(frozen=True, slots=True)
class LatchFailed:
    """No authenticated answer to the latch in time, or an error response from the peer."""

    reason: str
    code: int | None = None  # the STUN error code and reason phrase when the peer refused
    text: str = ""


@dataclass(frozen=True, slots=True)
class ConsentExpired:
    """No authenticated answer for ``consent_timeout_s``: stop sending, move the leg."""

    at: float
    last_answer_at: float


LegEvent = Latched | ConsentRefreshed | LatchFailed | ConsentExpired


@dataclass(frozen=True, slots=True)
class LegConfig:
    """Timers of one leg client; every one configurable, defaults from the RFCs."""

    reliable: bool = False  # TCP/TLS: no retransmission (RFC 8489 §6.2.2)
    rto_s: float = DEFAULT_RTO_S
    rto_max_s: float | None = None  # cap on the doubled interval (None: RFC 8489 as is)
    rc: int = RC
    rm: int = RM
    latch_timeout_s: float | None = None  # bounds the latch transaction (None: RFC only)
    consent_interval_s: float | None = CONSENT_INTERVAL_S  # None: no checks until asked
    consent_jitter: float = CONSENT_JITTER
    consent_timeout_s: float = CONSENT_TIMEOUT_S
    check_timeout_s: float = 2.0  # a consent check unanswered after this is forgotten


@dataclass(slots=True)
class _Transaction:
    transaction_id: bytes
    request: bytes
    first_sent: float
    sent: int  # requests sent (1 + retransmissions)
    next_at: float | None  # the next retransmission, None when no more will be sent
    expires_at: float
    latch: bool


class LegClient:
    """One leg's client: the latch transaction, then consent checks until closed."""

    def __init__(
        self,
        node_ufrag: str,
        client_ufrag: str,
        pwd: bytes,
        *,
        config: LegConfig | None = None,
        expected_fingerprint: str | None = None,
        peer_name: str = "media node",
        peer_domains: Sequence[str] = (),
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.node_ufrag = node_ufrag
        self.client_ufrag = client_ufrag
        self._pwd = pwd
        self.config = config or LegConfig()
        self.expected_fingerprint = expected_fingerprint
        self.peer_name = peer_name
        self.peer_domains = tuple(peer_domains)
        self._uniform = uniform
        self.state = LegState.IDLE
        self.drops: dict[str, int] = {}
        self.rtt_ms: float | None = None
        self.mapped: Address | None = None
        self.latched_at: float | None = None
        self.last_answer_at: float | None = None
        self.checks_sent = 0
        self.nominated = False  # check_now nominated this path (RFC 8445 §8.1.1)
        self._tiebreaker = secrets.randbits(64)  # RFC 8445 §16.1: one per ICE session
        self._transactions: dict[bytes, _Transaction] = {}
        self._outgoing: list[bytes] = []
        self._events: deque[LegEvent] = deque()
        self._latch_deadline: float | None = None
        self._next_check_at: float | None = None
        self.closed = False

    # ---------------------------------------------------------------- driving

    def start(self, now: float) -> None:
        """Send the latch request."""
        if self.state is not LegState.IDLE or self.closed:
            return
        self.state = LegState.LATCHING
        if self.config.latch_timeout_s is not None:
            self._latch_deadline = now + self.config.latch_timeout_s
        self._begin(now, latch=True)

    def check_now(self, now: float) -> None:
        """A consent check right away (besides the schedule) that nominates this path: the
        client chose it (RFC 8445 §8.1.1), e.g. to take it back after a race."""
        if self.state in (LegState.LATCHED, LegState.CONSENT_LOST) and not self.closed:
            self.nominated = True
            self._begin(now, latch=False)

    def keep_consent(self, now: float, interval_s: float = CONSENT_INTERVAL_S) -> None:
        """Send consent checks about every ``interval_s`` from now on (RFC 7675 §5.1)."""
        self.config = replace(self.config, consent_interval_s=interval_s)
        if self.state is LegState.LATCHED and not self.closed:
            self._schedule_check(now)

    def close(self) -> None:
        """Stop: no more requests, no more timers, no more events."""
        self.closed = True
        self._transactions.clear()
        self._outgoing.clear()
        self._next_check_at = None
        self._latch_deadline = None

    def receive(self, data: bytes, now: float) -> bool:
        """Offer one packet from the leg; True when it was STUN (answered here or dropped)."""
        if not data or data[0] > 3:  # RFC 7983 §7: STUN's first byte is 0-3
            return False
        if len(data) < 20:
            self._drop("stun_short")
            return True
        transaction = None if self.closed else self._transactions.get(bytes(data[8:20]))
        if transaction is None:
            self._drop("stun_unexpected")
            return True
        try:
            answer = parse_binding_response(data, pwd=self._pwd)
        except StunError:
            self._drop("stun_unauthenticated")  # a forged answer never latches or refreshes
            return True
        del self._transactions[transaction.transaction_id]
        if answer.error is not None:
            code, reason = answer.error
            if transaction.latch:
                self._fail(f"the peer refused the leg: {code} {reason}", code, reason)
            else:
                self._drop("stun_error_response")
            return True
        rtt = (now - transaction.first_sent) * 1000
        clean = transaction.sent == 1  # Karn: no RTT from a retransmitted request
        self.mapped = answer.mapped
        self.last_answer_at = now
        if clean:
            self.rtt_ms = rtt
        if transaction.latch:
            self.state = LegState.LATCHED
            self.latched_at = now
            self._latch_deadline = None
            self._schedule_check(now)
            self._events.append(Latched(now, rtt if clean else None, answer.mapped))
        else:
            if self.state is LegState.CONSENT_LOST:
                self.state = LegState.LATCHED
                self._schedule_check(now)
            self._events.append(ConsentRefreshed(now, rtt, answer.mapped))
        return True

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (None: nothing pending)."""
        times: list[float] = []
        for t in self._transactions.values():
            times.append(t.expires_at)
            if t.next_at is not None:
                times.append(t.next_at)
        for at in (self._latch_deadline, self._next_check_at, self._consent_deadline()):
            if at is not None:
                times.append(at)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Retransmit, give up, send the next consent check, or declare consent lost."""
        if self.closed:
            return
        if self._latch_deadline is not None and now >= self._latch_deadline:
            self._fail("no authenticated answer within "
                       f"{self.config.latch_timeout_s:.1f} s")
            return
        for t in list(self._transactions.values()):
            if now >= t.expires_at:
                del self._transactions[t.transaction_id]
                if t.latch:
                    self._fail(f"no authenticated answer after {t.sent} requests")
                    return
                continue
            if t.next_at is not None and now >= t.next_at:
                self._outgoing.append(t.request)
                t.sent += 1
                t.next_at = self._retransmit_at(t, now)
        deadline = self._consent_deadline()
        if deadline is not None and now >= deadline and self.state is LegState.LATCHED:
            self.state = LegState.CONSENT_LOST
            self._next_check_at = None
            self._transactions.clear()
            assert self.last_answer_at is not None
            self._events.append(ConsentExpired(now, self.last_answer_at))
            return
        if self._next_check_at is not None and now >= self._next_check_at:
            self._begin(now, latch=False)
            self._schedule_check(now)

    def datagrams_to_send(self) -> list[bytes]:
        """STUN requests to send on the leg now (frame them over TCP/TLS)."""
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> LegEvent | None:
        return self._events.popleft() if self._events else None

    # ---------------------------------------------------------------- pin

    def check_certificate(self, der: bytes) -> None:
        """Raise :class:`PinMismatch` unless ``der`` is the published certificate."""
        if not self.expected_fingerprint:
            return
        check = check_pins(der, [self.expected_fingerprint])
        got = check.seen
        if not check.matched:
            where = ", ".join(self.peer_domains) or self.peer_name
            raise PinMismatch(
                f"TLS inspection of {where}: {self.peer_name} presented certificate {got}, "
                f"not the node list's {self.expected_fingerprint}; exempt them from HTTPS "
                "inspection", seen=got, expected=self.expected_fingerprint)

    # ---------------------------------------------------------------- inside

    def _begin(self, now: float, *, latch: bool) -> None:
        txid = new_transaction_id()
        if self.nominated:
            request = build_leg_binding(self.node_ufrag, self.client_ufrag, self._pwd, txid,
                                  priority=CHECK_PRIORITY, use_candidate=True,
                                  controlling=self._tiebreaker)
        else:
            request = build_leg_binding(self.node_ufrag, self.client_ufrag, self._pwd, txid)
        c = self.config
        if latch and c.reliable:
            expires = now + TI_S
        elif latch:
            # RFC 8489 §6.2.1: requests at 0, RTO, 3 RTO, ... then Rm × RTO for the last answer
            expires = now + sum(self._interval(i) for i in range(c.rc - 1)) + c.rm * c.rto_s
        else:
            expires = now + c.check_timeout_s
        t = _Transaction(txid, request, now, 1, None, expires, latch)
        if latch and not c.reliable and c.rc > 1:
            t.next_at = now + self._interval(0)
        self._transactions[txid] = t
        self._outgoing.append(request)
        if not latch:
            self.checks_sent += 1

    def _interval(self, i: int) -> float:
        """The wait after the (i+1)-th request: RTO doubled i times (RFC 8489 §6.2.1)."""
        interval = self.config.rto_s * (1 << i)
        cap = self.config.rto_max_s
        return interval if cap is None else min(interval, cap)

    def _retransmit_at(self, t: _Transaction, now: float) -> float | None:
        if t.sent >= self.config.rc:
            return None
        return now + self._interval(t.sent - 1)

    def _schedule_check(self, now: float) -> None:
        interval = self.config.consent_interval_s
        if interval is None:
            self._next_check_at = None
            return
        spread = interval * self.config.consent_jitter
        self._next_check_at = now + self._uniform(interval - spread, interval + spread)

    def _consent_deadline(self) -> float | None:
        if self.state is not LegState.LATCHED or self.last_answer_at is None or self.closed:
            return None
        return self.last_answer_at + self.config.consent_timeout_s

    def _fail(self, reason: str, code: int | None = None, text: str = "") -> None:
        self.state = LegState.FAILED
        self._transactions.clear()
        self._latch_deadline = None
        self._next_check_at = None
        self._events.append(LatchFailed(reason, code, text))

    def _drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1


class Timer(Protocol):
    """What a scheduler returns for one delayed call (``asyncio.TimerHandle`` is one)."""

    def cancel(self) -> None: ...


class LegDriver:
    """Runs a :class:`LegClient` on a caller's clock and scheduler; no I/O of its own.

    Every call into the leg client is followed by a flush: send what it wants
    sent, hand its events to ``on_event``, re-arm its one timer with
    ``call_later(delay, callback)`` (an asyncio loop's ``call_later`` fits), so
    each service's adapter is the socket and nothing else.
    """

    def __init__(self, leg: LegClient, send: Callable[[bytes], None],
                 on_event: Callable[[LegEvent], None], *, clock: Callable[[], float],
                 call_later: Callable[[float, Callable[[], None]], Timer]) -> None:
        self.leg = leg
        self._send = send
        self._on_event = on_event
        self._clock = clock
        self._call_later = call_later
        self._timer: Timer | None = None

    def start(self) -> None:
        self.leg.start(self._clock())
        self._flush()

    def receive(self, data: bytes) -> bool:
        """Offer a packet from the leg; True when it was STUN (see :meth:`LegClient.receive`)."""
        consumed = self.leg.receive(data, self._clock())
        if consumed:
            self._flush()
        return consumed

    def call(self, action: Callable[[float], None]) -> None:
        """Run ``action(now)`` on the leg client (``check_now``, ``keep_consent``), flush."""
        action(self._clock())
        self._flush()

    def close(self) -> None:
        self.leg.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        self.leg.handle_timer(self._clock())
        self._flush()

    def _flush(self) -> None:
        for datagram in self.leg.datagrams_to_send():
            self._send(datagram)
        while (event := self.leg.next_event()) is not None:
            self._on_event(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        at = self.leg.get_timer()
        if at is not None:
            self._timer = self._call_later(max(0.0, at - self._clock()), self._fire)
