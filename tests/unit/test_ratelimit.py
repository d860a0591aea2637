"""The unauthenticated-STUN limiter: per flow (5-tuple), under a per-source-IP ceiling.

Defect pinned down (before: "The per-source-IP STUN bucket throttles every
device behind one enterprise NAT together"): with one bucket per IP, a
thousand devices behind one address got 40 answers between them. Fake
``now`` throughout (docs/design.md, "Code conventions": no clock in the core).
"""

from __future__ import annotations

from media_node.ratelimit import SourceLimiter

OFFICE = "198.51.100.7"


def _flow(port: int) -> tuple[str, str, int]:
    return ("udp/5004", OFFICE, port)


def test_a_thousand_devices_behind_one_nat_address_all_probe() -> None:
    """Each of 1,000 devices (its own NAT port) sends 4 probes at the same moment."""
    limiter = SourceLimiter(rate=20, burst=40, ip_rate=1000, ip_burst=4000)
    allowed = sum(limiter.allow(OFFICE, _flow(10_000 + d), 100.0)
                  for d in range(1000) for _ in range(4))
    assert allowed == 4000


def test_one_flow_gets_its_burst_then_its_rate() -> None:
    limiter = SourceLimiter(rate=20, burst=40)
    assert sum(limiter.allow(OFFICE, _flow(1), 0.0) for _ in range(100)) == 40
    assert sum(limiter.allow(OFFICE, _flow(1), 1.0) for _ in range(100)) == 20
    assert limiter.allow(OFFICE, _flow(2), 1.0)  # the flow next door is not throttled


def test_a_sender_rotating_source_ports_meets_the_ip_ceiling() -> None:
    """Spoofed or not, one address cannot make the node answer more than the ceiling."""
    limiter = SourceLimiter(rate=20, burst=40, ip_rate=100, ip_burst=200)
    assert sum(limiter.allow(OFFICE, _flow(p), 0.0) for p in range(1000)) == 200
    assert sum(limiter.allow(OFFICE, _flow(p), 1.0) for p in range(1000, 2000)) == 100
    assert limiter.allow("203.0.113.9", ("udp/5004", "203.0.113.9", 1), 1.0)  # others are fine


def test_a_refused_request_costs_no_token() -> None:
    limiter = SourceLimiter(rate=1, burst=1, ip_rate=1, ip_burst=2)
    assert limiter.allow(OFFICE, _flow(1), 0.0)
    assert not limiter.allow(OFFICE, _flow(1), 0.0)  # the flow is empty: the IP keeps its token
    assert limiter.allow(OFFICE, _flow(2), 0.0)


def test_memory_is_bounded() -> None:
    limiter = SourceLimiter(rate=20, burst=40, max_keys=100)
    for p in range(10_000):
        limiter.allow(f"192.0.2.{p % 250}", ("udp/5004", "x", p), p / 1000)
    assert len(limiter) <= 200


def test_rate_zero_disables_limiting() -> None:
    limiter = SourceLimiter(rate=0, burst=0)
    assert all(limiter.allow(OFFICE, _flow(1), 0.0) for _ in range(10_000))
