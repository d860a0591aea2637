"""Assignment at its edges: exactly-full nodes, nodes without TLS, the reason's figures.

Each test pins down a mutant of ``cloud/assignment.py`` that survived the unit suite
(``make mutate``).
"""

from __future__ import annotations

from cloud.assignment import assign, transport_plan
from tests.unit.test_assignment import node, seen
from wire.models import Endpoint, NodeInfo
from wire.transports import RUNGS_BY_NAME, DeviceProfile, RungName, Transport


def test_a_node_at_exactly_full_load_is_no_candidate() -> None:
    """Load 1.0 is full: the node is excluded, the next one chosen."""
    full, spare = node("full", load=1.0), node("spare", load=0.99)
    chosen = assign(org="acme", profile=DeviceProfile.DESKTOP, nodes=[full, spare],
                    results=[seen("full", 5), seen("spare", 50)], meeting_nodes=frozenset())
    assert chosen.node.id == "spare"
    excluded = {c.node_id: c.excluded for c in chosen.reason.candidates}
    assert excluded == {"full": "full", "spare": None}


def test_a_node_without_tls_gets_no_proxy_rung_and_no_error() -> None:
    """The http-proxy rung rides on tls/443: a UDP-only node has neither."""
    udp_only = NodeInfo.model_validate({
        "id": "u", "kind": "cloud", "region": "r", "address": "192.0.2.1",
        "endpoints": [Endpoint(rung=RungName.UDP_5004, transport=Transport.UDP, port=5004)]})
    plan = transport_plan(udp_only, [seen("u", 10)], DeviceProfile.DESKTOP)
    assert [e.rung for e in plan] == ["udp/5004"]


def test_the_reason_reports_the_measured_rtt_and_the_penalty_apart() -> None:
    """The reason shows why: the RTT as measured, the transport penalty beside it."""
    tcp = RUNGS_BY_NAME[RungName.TCP_5004]
    chosen = assign(org="acme", profile=DeviceProfile.DESKTOP, nodes=[node("n")],
                    results=[seen("n", 12.5, "tcp/5004")], meeting_nodes=frozenset())
    [score] = chosen.reason.candidates
    assert score.rtt_ms == 12.5
    assert score.transport_penalty_ms == tcp.penalty_ms > 0
    assert score.score == 12.5 + tcp.penalty_ms
