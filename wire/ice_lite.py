"""ICE-lite for one media leg, sans I/O: the controlled agent of RFC 8445 on a node.

A node is a lite agent (RFC 8445 §2.5): it has host candidates only, sends
no connectivity check, and answers the checks of the controlling agent, a
participant's client. One :class:`IceLite` per leg, in the shape of
``wire.leg_client``: the caller passes ``now`` and the pair a check came in
on (the node's ``(sink, address)``; any hashable value here), and reads what
to do from the :class:`CheckOutcome`. It never reads a clock or sends.

- Valid list (RFC 8445 §7.3.2): every authenticated check is answered, and
  its pair (local candidate: where it came in; remote: where it came from)
  goes on the valid list with the time of its check: consent to send on that
  pair (RFC 7675 §5.1) lasts ``consent_s`` from its latest check.
- Nomination (RFC 8445 §7.3.2, §8.2): a check with USE-CANDIDATE from the
  controlling agent sets the pair's nominated flag. With several nominated
  pairs (aggressive nomination, RFC 8445 §8.1.1) the one of highest pair
  priority (§6.1.2.3) is the selected pair, whatever order the checks came
  in; between pairs of equal priority (one local candidate, a NAT that
  rebound the client's port) the latest nomination wins. A check on any
  other pair is answered and refreshes that pair's consent, but does not move
  media (RFC 8445 §12.1: once selected, data goes on the selected pair only).
- Before any nomination, and once no nominated pair has consent left, the
  pair of the latest authenticated check carries media: a lite agent may send
  on a valid pair (RFC 8445 §12.1.1), and a client that never nominates (a
  cascade leg, an older client) keeps working as before.
- Roles (RFC 8445 §6.1.1): the lite agent is always controlled; the peer is
  expected to send ICE-CONTROLLING. Role-conflict repair and its 487 answer
  (§7.3.1.1) are procedures of full implementations (§7.3.1), so a lite agent
  never answers 487. A check that says ICE-CONTROLLED is answered (it is a
  valid check) but nominates nothing: only the controlling agent nominates
  (§7.1.2). It is counted (``controlled_peer``).

Credentials (RFC 8445 §5.3, RFC 8839 §5.4): :func:`new_ufrag` and
:func:`new_password` draw ice-chars (ALPHA / DIGIT / "+" / "/").
"""

from __future__ import annotations

import secrets
import string
import struct
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from wire.stun import Attr
from wire.transports import NODE_RUNGS, RungName

#: RFC 8839 §5.4: ice-char = ALPHA / DIGIT / "+" / "/"
ICE_CHARS: Final = string.ascii_letters + string.digits + "+/"
_ICE_CHAR_SET: Final = frozenset(ICE_CHARS)
#: RFC 8839 §5.4: ufrag = 4*256ice-char, password = 22*256ice-char
UFRAG_MIN: Final = 4
PASSWORD_MIN: Final = 22
ICE_MAX: Final = 256
#: Lengths minted here: 8 ice-chars carry 48 bits (RFC 8445 §5.3 asks for at least 24),
#: 24 carry 144 (at least 128). Each ice-char is 6 bits: 64 symbols.
UFRAG_LENGTH: Final = 8
PASSWORD_LENGTH: Final = 24
#: RFC 8445 §5.1.2.2: recommended type preferences (host 126, peer-reflexive 110)
HOST_PREFERENCE: Final = 126
PEER_REFLEXIVE_PREFERENCE: Final = 110
#: pairs kept on one leg's valid list; the least recently checked one goes first
MAX_PAIRS: Final = 16

P = TypeVar("P", bound=Hashable)


def new_ufrag(length: int = UFRAG_LENGTH) -> str:
    """A username fragment of ice-chars, ``6 × length`` random bits (RFC 8445 §5.3)."""
    if not UFRAG_MIN <= length <= ICE_MAX:
        raise ValueError(f"a ufrag is {UFRAG_MIN} to {ICE_MAX} ice-chars, not {length}")
    return "".join(secrets.choice(ICE_CHARS) for _ in range(length))


def new_password(length: int = PASSWORD_LENGTH) -> str:
    """A password of ice-chars, ``6 × length`` random bits (RFC 8445 §5.3: at least 128)."""
    if not PASSWORD_MIN <= length <= ICE_MAX:
        raise ValueError(f"a password is {PASSWORD_MIN} to {ICE_MAX} ice-chars, not {length}")
    return "".join(secrets.choice(ICE_CHARS) for _ in range(length))


def is_ice_chars(value: str) -> bool:
    """Only ice-chars (RFC 8839 §5.4), and at least one."""
    return bool(value) and _ICE_CHAR_SET.issuperset(value)


def candidate_priority(type_preference: int, local_preference: int, component: int = 1) -> int:
    """RFC 8445 §5.1.2.1: 2^24 × type preference + 2^8 × local preference + (256 − component)."""
    if not (0 <= type_preference <= 126 and 0 <= local_preference <= 0xFFFF
            and 1 <= component <= 256):
        raise ValueError("type preference 0-126, local preference 0-65535, component 1-256")
    return (type_preference << 24) + (local_preference << 8) + (256 - component)


#: RFC 8445 §5.1.2.1: the priority of a node's host candidate on each rung, the ladder's
#: best rung highest (udp/5004 over udp/33434 over tcp/5004 ...); the node's checks and
#: the candidates of its SDP answers use the same numbers. Every rung a node serves has
#: one (``NODE_RUNGS``: content's tcp/33434 too), or a check on it would find none.
LOCAL_PRIORITY: Final = {rung.name: candidate_priority(HOST_PREFERENCE, 0xFFFF - i)
                         for i, rung in enumerate(NODE_RUNGS)}


def local_priority(rung: RungName) -> int:
    """The priority of the node's host candidate on ``rung`` (RFC 8445 §5.1.2.1)."""
    return LOCAL_PRIORITY[rung]


def pair_priority(controlling: int, controlled: int) -> int:
    """RFC 8445 §6.1.2.3: 2^32 × MIN(G, D) + 2 × MAX(G, D) + (G > D ? 1 : 0)."""
    g, d = controlling, controlled
    return (min(g, d) << 32) + 2 * max(g, d) + (1 if g > d else 0)


# ----------------------------------------------------------------------------- the check


@dataclass(frozen=True, slots=True)
class CheckAttributes:
    """The ICE attributes of a Binding request (RFC 8445 §7.1, §16.1)."""

    priority: int | None = None
    use_candidate: bool = False
    controlling: int | None = None  # ICE-CONTROLLING's tiebreaker
    controlled: int | None = None  # ICE-CONTROLLED's tiebreaker


NO_ICE_ATTRIBUTES: Final = CheckAttributes()


def read_check_attributes(data: bytes) -> CheckAttributes:
    """The ICE attributes of a request already validated (``wire.stun.validate_request``).

    Only attributes before MESSAGE-INTEGRITY count (RFC 5389 §15.4: those after
    it are not covered by it, and ignored); a value of the wrong size is read
    as absent. Never raises.
    """
    priority = controlling = controlled = None
    use_candidate = False
    pos, end = 20, len(data)
    while pos + 4 <= end:
        kind, length = struct.unpack_from("!HH", data, pos)
        value = data[pos + 4:pos + 4 + length]
        if kind == Attr.MESSAGE_INTEGRITY or len(value) != length:
            break
        if kind == Attr.PRIORITY and length == 4:
            priority = int.from_bytes(value, "big")
        elif kind == Attr.USE_CANDIDATE and length == 0:
            use_candidate = True
        elif kind == Attr.ICE_CONTROLLING and length == 8:
            controlling = int.from_bytes(value, "big")
        elif kind == Attr.ICE_CONTROLLED and length == 8:
            controlled = int.from_bytes(value, "big")
        pos += 4 + length + (-length % 4)
    return CheckAttributes(priority, use_candidate, controlling, controlled)


# ----------------------------------------------------------------------------- the agent


@dataclass(frozen=True, slots=True)
class CheckOutcome(Generic[P]):
    """What to do with one authenticated check.

    ``answer``: send a Binding success response (a lite agent answers every
    authenticated check; it has no 487 to give). ``selected``: the check's own
    pair is the media path after it (send media there, it has consent).
    ``path``: the media path after the check (None: none yet). ``nominated``:
    the check nominated its pair.
    """

    answer: bool
    selected: bool
    path: P | None
    nominated: bool


@dataclass(slots=True)
class _Pair:
    priority: int
    checked_at: float  # consent (RFC 7675 §5.1): the latest authenticated check
    nominated_at: float | None = None


class IceLite(Generic[P]):
    """One leg's lite agent: the valid list, nominations and the selected pair."""

    def __init__(self, consent_s: float = 30.0) -> None:
        self.consent_s = consent_s
        self.pairs: dict[P, _Pair] = {}
        self.path: P | None = None
        self.counts: dict[str, int] = {}

    def receive_check(self, pair: P, check: CheckAttributes, local_priority: int,
                      now: float) -> CheckOutcome[P]:
        """An authenticated Binding request came in on ``pair``.

        ``local_priority`` is the priority of the node's candidate the request
        came in on (RFC 8445 §5.1.2.1); the request's PRIORITY is the remote
        candidate's (§7.3.1.3; 0 when absent). Pair priority as §6.1.2.3 with
        the peer controlling.
        """
        remote = check.priority if check.priority is not None else 0
        entry = self.pairs.get(pair)
        if entry is None:
            entry = self.pairs[pair] = _Pair(pair_priority(remote, local_priority), now)
            self._bound()
        else:
            entry.checked_at = now
            entry.priority = pair_priority(remote, local_priority)
        nominated = False
        if check.controlled is not None and check.controlling is None:
            self._count("controlled_peer")  # §7.1.2: only the controlling agent nominates
        elif check.use_candidate:
            entry.nominated_at = now  # §7.3.2: the nominated flag of the valid pair
            nominated = True
            self._count("nominations")
        best = self._best_nominated(now)
        # §12.1.1: with no (live) nominated pair, media goes on the latest valid pair
        self.path = best if best is not None else pair
        if self.path != pair:
            self._count("backup_checks")
        return CheckOutcome(True, self.path == pair, self.path, nominated)

    def forget(self, pair: P) -> None:
        """``pair`` is gone (its connection closed, another leg took the address)."""
        self.pairs.pop(pair, None)
        if self.path == pair:
            self.path = None

    def forget_where(self, gone: Callable[[P], bool]) -> None:
        for pair in [p for p in self.pairs if gone(p)]:
            self.forget(pair)

    def nominated(self, pair: P) -> bool:
        entry = self.pairs.get(pair)
        return entry is not None and entry.nominated_at is not None

    def consent_fresh(self, pair: P, now: float) -> bool:
        """RFC 7675 §5.1: an authenticated check on ``pair`` within ``consent_s``."""
        entry = self.pairs.get(pair)
        return entry is not None and now - entry.checked_at <= self.consent_s

    # ---------------------------------------------------------------- inside

    def _best_nominated(self, now: float) -> P | None:
        """§8.1.1: the nominated pair of highest priority; ties to the latest nomination."""
        best: P | None = None
        key: tuple[int, float] | None = None
        for pair, entry in self.pairs.items():
            if entry.nominated_at is None or now - entry.checked_at > self.consent_s:
                continue
            mine = (entry.priority, entry.nominated_at)
            if key is None or mine > key:
                best, key = pair, mine
        return best

    def _bound(self) -> None:
        while len(self.pairs) > MAX_PAIRS:
            victims = [p for p in self.pairs if p != self.path]
            oldest = min(victims, key=lambda p: self.pairs[p].checked_at)
            del self.pairs[oldest]

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1
