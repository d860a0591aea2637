"""Outstanding STUN requests, matched to their answers by transaction id; sans-I/O.

RFC 8489 §5: the transaction ID "allows the client to associate the response
with the request that generated it". A prober sends one request per
transaction (each retransmission a fresh id, so an RTT is never ambiguous,
Karn), :meth:`TransactionTable.send` remembers it with the caller's ``now``,
and :meth:`TransactionTable.receive` gives back the request's key and its RTT
for the answer that matches, once. An answer that matches nothing in flight
(late, duplicated, forged) is counted in :attr:`TransactionTable.unmatched`
and dropped, never raised. No clock, no socket: the caller passes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from wire.stun import STUN_HEADER_LENGTH, build_discovery_probe, new_transaction_id

K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class Answer(Generic[K]):
    """The answer to one request: whose it was, its RTT, the response's bytes."""

    key: K
    rtt_ms: float
    response: bytes


class TransactionTable(Generic[K]):
    """Requests in flight by transaction id, each with its caller's key and send time."""

    def __init__(self) -> None:
        self._in_flight: dict[bytes, tuple[K, float]] = {}
        self.unmatched = 0

    def __len__(self) -> int:
        return len(self._in_flight)

    def send(self, key: K, now: float) -> tuple[bytes, bytes]:
        """A new discovery Binding Request for ``key``, sent at ``now``: (its transaction
        id, its bytes)."""
        transaction_id = new_transaction_id()
        self._in_flight[transaction_id] = (key, now)
        return transaction_id, build_discovery_probe(transaction_id)

    def receive(self, data: bytes, now: float) -> Answer[K] | None:
        """The answer ``data`` is, or None (counted in :attr:`unmatched`)."""
        entry = None
        if len(data) >= STUN_HEADER_LENGTH:
            entry = self._in_flight.pop(bytes(data[8:20]), None)
        if entry is None:
            self.unmatched += 1
            return None
        key, sent = entry
        return Answer(key, (now - sent) * 1000, bytes(data))

    def forget(self, transaction_id: bytes) -> None:
        """Give up on one request (it timed out): a later answer to it is unmatched."""
        self._in_flight.pop(transaction_id, None)
