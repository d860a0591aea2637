"""Discovery's requests in flight, sans-I/O (``wire.stun_transactions``), on a fake clock.

Defect: ``client/probe.py`` kept its own table of pending transactions inside its
asyncio protocol and read ``time.perf_counter()`` around each await, so neither
the matching nor the RTT could be tested without sockets and real time. RFC 8489
§5: the transaction ID "allows the client to associate the response with the
request that generated it".
"""

from __future__ import annotations

from wire.address import Address
from wire.stun import build_discovery_response, parse_binding_response, transaction_id_of
from wire.stun_transactions import TransactionTable

MAPPED = Address("198.51.100.7", 40000)


def _answer(request: bytes) -> bytes:
    answer = build_discovery_response(transaction_id_of(request), MAPPED)
    assert answer is not None
    return answer


def test_an_answer_gives_its_request_key_and_rtt() -> None:
    table: TransactionTable[str] = TransactionTable()
    txid, request = table.send("node-a udp/5004", now=10.0)
    assert transaction_id_of(request) == txid
    answer = table.receive(_answer(request), now=10.025)
    assert answer is not None and answer.key == "node-a udp/5004"
    assert abs(answer.rtt_ms - 25.0) < 1e-9
    assert parse_binding_response(answer.response).mapped == MAPPED
    assert len(table) == 0


def test_each_retransmission_is_its_own_transaction() -> None:
    """A fresh id per send: the answer to the first send times the first send only."""
    table: TransactionTable[int] = TransactionTable()
    _, first = table.send(1, now=0.0)
    _, second = table.send(1, now=0.3)
    late = table.receive(_answer(first), now=0.35)
    assert late is not None and abs(late.rtt_ms - 350.0) < 1e-9
    on_time = table.receive(_answer(second), now=0.36)
    assert on_time is not None and abs(on_time.rtt_ms - 60.0) < 1e-6


def test_stray_duplicate_forgotten_and_short_answers_are_counted_not_raised() -> None:
    table: TransactionTable[str] = TransactionTable()
    _, request = table.send("a", now=0.0)
    _, other = table.send("b", now=0.0)
    assert table.receive(_answer(request), now=0.01) is not None
    assert table.receive(_answer(request), now=0.02) is None  # a duplicate
    table.forget(transaction_id_of(other))  # it timed out
    assert table.receive(_answer(other), now=5.0) is None  # its late answer
    assert table.receive(b"\x01\x01\x00", now=5.0) is None  # shorter than a header
    assert table.unmatched == 3 and len(table) == 0
