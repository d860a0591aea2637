"""Assignment as a pure function, on tables (docs/design.md "Assignment"; the seed's
"The node assignment might not rely just on the RTT measurements, but also on
where the other participants in the meeting are joining from.")."""

from __future__ import annotations

from typing import Any

import pytest

from cloud.assignment import CASCADE_COST_MS, assign
from cloud.errors import NoCandidate
from wire.models import Endpoint, NodeInfo, ProbeResult
from wire.transports import DeviceProfile

ALL = [("udp/5004", "udp", 5004), ("udp/33434", "udp", 33434), ("tcp/5004", "tcp", 5004),
       ("tls/443", "tls", 443)]


def node(id: str, **kw: Any) -> NodeInfo:
    fields: dict[str, Any] = {
        "id": id, "kind": "cloud", "region": "r", "address": "192.0.2.1",
        "endpoints": [Endpoint.model_validate({"rung": r, "transport": t, "port": p})
                      for r, t, p in ALL],
    }
    fields.update(kw)
    return NodeInfo.model_validate(fields)


def seen(id: str, rtt: float | None, rung: str = "udp/5004") -> ProbeResult:
    return ProbeResult.model_validate(
        {"node_id": id, "rung": rung, "reachable": rtt is not None, "rtt_ms": rtt}
    )


NEAR, MID, FAR = node("near"), node("mid"), node("far")


@pytest.mark.parametrize(
    ("case", "nodes", "results", "profile", "meeting", "chosen", "first_rung"),
    [
        ("lowest RTT wins", [NEAR, MID, FAR],
         [seen("near", 10), seen("mid", 40), seen("far", 90)], "desktop", [], "near", "udp/5004"),
        ("UDP beats a closer TCP-only node", [NEAR, MID],
         [seen("near", 10, "tcp/5004"), seen("mid", 40)], "desktop", [], "mid", "udp/5004"),
        ("whitelisting: only the reached node is a candidate", [NEAR, FAR],
         [seen("near", None), seen("far", 90)], "desktop", [], "far", "udp/5004"),
        ("co-location beats a slightly closer node", [NEAR, MID],
         [seen("near", 10), seen("mid", 10 + CASCADE_COST_MS - 5)], "desktop", ["mid"], "mid",
         "udp/5004"),
        ("a far co-located node loses to a much closer one", [NEAR, FAR],
         [seen("near", 10), seen("far", 90)], "desktop", ["far"], "near", "udp/5004"),
        ("load counts", [node("near", load=0.9), MID],
         [seen("near", 10), seen("mid", 20)], "desktop", [], "mid", "udp/5004"),
        ("unhealthy nodes are skipped", [node("near", healthy=False), MID],
         [seen("near", 10), seen("mid", 40)], "desktop", [], "mid", "udp/5004"),
        ("full nodes are skipped", [node("near", load=1.0), MID],
         [seen("near", 10), seen("mid", 40)], "desktop", [], "mid", "udp/5004"),
        ("mobile may use TCP", [NEAR],
         [seen("near", 10, "tcp/5004")], "mobile", [], "near", "tcp/5004"),
        ("the org's hybrid node wins when reachable", [NEAR, node("onprem", kind="hybrid",
                                                                  org="acme")],
         [seen("near", 10), seen("onprem", 30)], "desktop", [], "onprem", "udp/5004"),
        ("another org's hybrid node is invisible", [MID, node("theirs", kind="hybrid",
                                                              org="other")],
         [seen("mid", 40), seen("theirs", 1)], "desktop", [], "mid", "udp/5004"),
    ],
)
def test_assignment_table(case: str, nodes: list[NodeInfo], results: list[ProbeResult],
                          profile: str, meeting: list[str], chosen: str, first_rung: str) -> None:
    a = assign(org="acme", profile=DeviceProfile(profile), nodes=nodes, results=results,
               meeting_nodes=frozenset(meeting))
    assert a.node.id == chosen, case
    assert a.plan[0].rung == first_rung, case
    assert a.reason.chosen == chosen


def test_room_device_is_never_given_a_proxy_or_tcp_transport() -> None:
    """FNR: room media 'does not work if UDP traffic to both port 5004 and port 33434 is
    blocked'; WP: hard endpoints have 'no support for proxying media traffic'."""
    with pytest.raises(NoCandidate) as info:
        assign(org="acme", profile=DeviceProfile.ROOM, nodes=[NEAR],
               results=[seen("near", 10, "tcp/5004"), seen("near", 12, "tls/443")],
               meeting_nodes=frozenset())
    assert info.value.reason is not None
    assert info.value.reason.candidates[0].excluded == (
        "not reached on a transport this profile allows")
    a = assign(org="acme", profile=DeviceProfile.ROOM, nodes=[NEAR],
               results=[seen("near", 10)], meeting_nodes=frozenset())
    assert [e.rung for e in a.plan] == ["udp/5004", "udp/33434"]


def test_plan_puts_reached_rungs_first_and_proxy_after_tls() -> None:
    a = assign(org="acme", profile=DeviceProfile.DESKTOP, nodes=[NEAR],
               results=[seen("near", 10, "tls/443")], meeting_nodes=frozenset())
    assert [e.rung for e in a.plan] == [
        "tls/443", "udp/5004", "udp/33434", "tcp/5004", "http-proxy",
    ]


def test_reason_scores_every_candidate() -> None:
    a = assign(org="acme", profile=DeviceProfile.DESKTOP, nodes=[NEAR, MID, FAR],
               results=[seen("near", 10), seen("mid", 40)], meeting_nodes=frozenset())
    by = {c.node_id: c for c in a.reason.candidates}
    assert by["near"].score == 10 and by["mid"].score == 40
    assert by["far"].score is None and by["far"].excluded is not None


def test_udp_33434_is_a_last_resort_even_when_it_answered_faster() -> None:
    """FNR: "The Cisco Spark app uses port 33434 only when 5004 is blocked" (and it "may
    experience throttling"): a node's best rung is udp/5004 when both answered; a node reached
    only on 33434 still beats one reached only over TCP."""
    a = assign(org="acme", profile=DeviceProfile.DESKTOP, nodes=[NEAR, MID],
               results=[seen("near", 12), seen("near", 10, "udp/33434"),
                        seen("mid", 40, "tcp/5004")], meeting_nodes=frozenset())
    by = {c.node_id: c for c in a.reason.candidates}
    assert (by["near"].rung, by["near"].score) == ("udp/5004", 12)
    only_33434 = assign(org="acme", profile=DeviceProfile.DESKTOP, nodes=[NEAR, MID],
                        results=[seen("near", 10, "udp/33434"), seen("mid", 10, "tcp/5004")],
                        meeting_nodes=frozenset())
    assert only_33434.reason.chosen == "near" and only_33434.plan[0].rung == "udp/33434"


def test_a_full_hybrid_node_overflows_to_the_cloud_and_the_reason_says_so() -> None:
    """Overflow: the org's hybrid node at capacity sends a new join to the cloud, and the
    assignment's reason says why the local node was passed over (rule ``hybrid-overflow``,
    the hybrid candidate excluded as ``full``)."""
    onprem = node("onprem", kind="hybrid", org="acme", load=1.0)
    a = assign(org="acme", profile=DeviceProfile.DESKTOP, nodes=[NEAR, onprem],
               results=[seen("near", 30), seen("onprem", 1)],
               meeting_nodes=frozenset({"onprem"}))
    assert a.node.id == "near" and a.reason.rule == "hybrid-overflow"
    by = {c.node_id: c for c in a.reason.candidates}
    assert by["onprem"].excluded == "full"
    # a hybrid node the device did not reach is no overflow: the ordinary rule applies
    far_away = assign(org="acme", profile=DeviceProfile.DESKTOP,
                      nodes=[NEAR, node("onprem", kind="hybrid", org="acme")],
                      results=[seen("near", 30), seen("onprem", None)],
                      meeting_nodes=frozenset())
    assert far_away.reason.rule == "lowest-score"
