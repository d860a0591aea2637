"""Hybrid clusters as pure assignment rules, on tables (docs/design.md "Assignment").

The sentences of the requirement each test cites: (1) "The cloud places a meeting on one node of
the cluster the participants reached; when that node is full, another node of the same
cluster takes the next participants and the two are joined by an intra-cluster
cascade ... Cloud overflow happens only when the whole cluster is full or unreachable."
(2) "A device whose STUN round-trip to its cluster is ≥ 250 ms is placed on the cloud
..., configurable per cluster." (3) "A meeting created private keeps all media on the
org's clusters: never a cascade to the cloud. A participant who cannot reach any node
of the org's clusters is refused at join with a clear reason (and a documented
status)." (4) "Devices of another org joining an org's meeting are placed on the cloud
by default (configurable)."
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from cloud.assignment import OVERFLOW_RTT_MS, Rule, Scope, assign, assign_webrtc, cluster_of
from cloud.cascades import roles
from cloud.errors import NoCandidate, PrivateMeetingUnreachable
from cloud.http import status_of
from tests.unit.test_assignment import node, seen
from wire.models import NodeInfo, ProbeResult
from wire.transports import DeviceProfile

DTLS = {"dtls_fingerprint": "sha-256 " + ":".join(["AB"] * 32)}


def hybrid(id: str, cluster: str | None = "hq", org: str = "acme", **kw: Any) -> NodeInfo:
    return node(id, kind="hybrid", org=org, cluster=cluster, **DTLS, **kw)


CLOUD = node("cloud-1", **DTLS)
PRIVATE = Scope(meeting_org="acme", private=True)


def place(nodes: list[NodeInfo], results: list[ProbeResult], meeting: tuple[str, ...] = (),
          scope: Scope | None = None, org: str = "acme") -> tuple[str, str]:
    a = assign(org=org, profile=DeviceProfile.DESKTOP, nodes=nodes, results=results,
               meeting_nodes=frozenset(meeting), scope=scope or Scope(meeting_org="acme"))
    assert a.reason.chosen == a.node.id
    assert json.loads(a.reason.model_dump_json())["rule"] == a.reason.rule  # the wire's text
    return a.node.id, a.reason.rule


# ------------------------------------------------------------------ (1) clusters


@pytest.mark.parametrize(("case", "nodes", "results", "meeting", "chosen", "rule"), [
    ("the first participant: the cluster's best node",
     [CLOUD, hybrid("h1"), hybrid("h2")], [seen("cloud-1", 5), seen("h1", 3), seen("h2", 2)],
     (), "h2", Rule.HYBRID_LOCAL),
    ("the meeting stays on its node of the cluster, though another is idle and nearer",
     [CLOUD, hybrid("h1", load=0.9), hybrid("h2")],
     [seen("cloud-1", 5), seen("h1", 30), seen("h2", 2)], ("h1",), "h1", Rule.HYBRID_LOCAL),
    ("its node full: another node of the SAME cluster takes the next participant",
     [CLOUD, hybrid("h1", load=1.0), hybrid("h2"), hybrid("b1", cluster="branch")],
     [seen("cloud-1", 5), seen("h1", 3), seen("h2", 3), seen("b1", 1)], ("h1",), "h2",
     Rule.INTRA_CLUSTER),
    ("the whole cluster full: the cloud (overflow by capacity)",
     [CLOUD, hybrid("h1", load=1.0), hybrid("h2", load=1.0)],
     [seen("cloud-1", 5), seen("h1", 3), seen("h2", 3)], ("h1", "h2"), "cloud-1",
     Rule.HYBRID_OVERFLOW),
    ("a full node and one this device did not reach: the cluster is full for it",
     [CLOUD, hybrid("h1", load=1.0), hybrid("h2")],
     [seen("cloud-1", 5), seen("h1", 3), seen("h2", None)], ("h1",), "cloud-1",
     Rule.HYBRID_OVERFLOW),
    ("a cluster unreachable (UDP blocked to it): the cloud, no overflow",
     [CLOUD, hybrid("h1"), hybrid("h2")],
     [seen("cloud-1", 5), seen("h1", None), seen("h2", None)], (), "cloud-1", Rule.LOWEST_SCORE),
    ("its node dead: another node of the cluster, not the cloud",
     [CLOUD, hybrid("h1", healthy=False), hybrid("h2")],
     [seen("cloud-1", 5), seen("h1", 3), seen("h2", 3)], ("h1",), "h2", Rule.INTRA_CLUSTER),
    ("of two clusters reached, the one carrying the meeting, though farther",
     [CLOUD, hybrid("h1"), hybrid("b1", cluster="branch")],
     [seen("cloud-1", 5), seen("h1", 40), seen("b1", 2)], ("h1",), "h1", Rule.HYBRID_LOCAL),
    ("a new meeting: the nearest cluster",
     [CLOUD, hybrid("h1"), hybrid("b1", cluster="branch")],
     [seen("cloud-1", 5), seen("h1", 40), seen("b1", 2)], (), "b1", Rule.HYBRID_LOCAL),
    ("a meeting on the cloud (a guest there): the org's device still goes local",
     [CLOUD, hybrid("h1")], [seen("cloud-1", 5), seen("h1", 3)], ("cloud-1",), "h1",
     Rule.HYBRID_LOCAL),
])
def test_cluster_table(case: str, nodes: list[NodeInfo], results: list[ProbeResult],
                       meeting: tuple[str, ...], chosen: str, rule: str) -> None:
    assert place(nodes, results, meeting) == (chosen, rule), case


def test_moving_away_from_the_meetings_node_of_a_cluster_is_intra_cluster() -> None:
    """(1) A participant moved away from the meeting's node of the cluster (it died, or the
    device hears nothing from it) lands on another node of the same cluster, rule
    ``intra-cluster``, and the node it left is named as such. Defect: the node moved away
    from was left out of the nodes given to the assignment, so the cluster no longer carried
    the meeting and the move read ``hybrid-local``."""
    nodes = [CLOUD, hybrid("h1"), hybrid("h2")]
    a = assign(org="acme", profile=DeviceProfile.DESKTOP, nodes=nodes,
               results=[seen("cloud-1", 5), seen("h1", 2), seen("h2", 3)],
               meeting_nodes=frozenset({"h1"}), scope=Scope(meeting_org="acme"),
               exclude=frozenset({"h1"}))
    assert (a.node.id, a.reason.rule) == ("h2", Rule.INTRA_CLUSTER)
    assert {c.node_id: c.excluded for c in a.reason.candidates}["h1"] == (
        "the node this participant moves away from")


def test_a_node_registered_without_a_cluster_is_a_cluster_of_its_own() -> None:
    """Today's single hybrid node behaves as before: full, its join overflows to the cloud
    (the rule the lab proved, ``hybrid-overflow``), never onto another lone node."""
    lone, other = hybrid("h1", cluster=None, load=1.0), hybrid("h2", cluster=None)
    assert cluster_of(lone) == "h1"
    assert place([CLOUD, lone, other], [seen("cloud-1", 5), seen("h1", 3)],
                 ("h1",)) == ("cloud-1", Rule.HYBRID_OVERFLOW)
    assert place([CLOUD, lone, other], [seen("cloud-1", 5), seen("h1", 3), seen("h2", 3)],
                 ("h1",)) == ("h2", Rule.HYBRID_LOCAL)


def test_the_full_node_is_named_in_the_reason() -> None:
    a = assign(org="acme", profile=DeviceProfile.DESKTOP,
               nodes=[CLOUD, hybrid("h1", load=1.0), hybrid("h2")],
               results=[seen("cloud-1", 5), seen("h1", 3), seen("h2", 3)],
               meeting_nodes=frozenset({"h1"}))
    assert {c.node_id: c.excluded for c in a.reason.candidates}["h1"] == "full"


def test_another_orgs_cluster_is_never_listed() -> None:
    a = assign(org="acme", profile=DeviceProfile.DESKTOP,
               nodes=[CLOUD, hybrid("theirs", org="globex")],
               results=[seen("cloud-1", 5), seen("theirs", 1)], meeting_nodes=frozenset())
    assert a.node.id == "cloud-1" and [c.node_id for c in a.reason.candidates] == ["cloud-1"]


# ------------------------------------------------------------------ (2) overflow by delay


@pytest.mark.parametrize(("rtt", "threshold", "chosen", "rule"), [
    (40.0, None, "h1", Rule.HYBRID_LOCAL),  # "one at 40 ms stays"
    (249.9, None, "h1", Rule.HYBRID_LOCAL),
    (250.0, None, "cloud-1", Rule.OVERFLOW_DELAY),  # "≥ 250 ms is placed on the cloud"
    (400.0, None, "cloud-1", Rule.OVERFLOW_DELAY),
    (120.0, 100.0, "cloud-1", Rule.OVERFLOW_DELAY),  # "configurable per cluster"
    (400.0, 500.0, "h1", Rule.HYBRID_LOCAL),
])
def test_overflow_by_delay(rtt: float, threshold: float | None, chosen: str,
                           rule: str) -> None:
    """A far branch office does not hairpin into headquarters."""
    h1 = hybrid("h1", overflow_rtt_ms=threshold)
    assert OVERFLOW_RTT_MS == 250.0
    assert place([CLOUD, h1], [seen("cloud-1", 20), seen("h1", rtt)]) == (chosen, rule)


def test_the_delay_is_to_the_cluster_its_nearest_node_and_its_lowest_threshold() -> None:
    """The round trip to a cluster is to its nearest node the device reached; nodes that
    registered different thresholds: the lowest holds for the whole cluster."""
    near, far = hybrid("h1"), hybrid("h2")
    assert place([CLOUD, near, far], [seen("cloud-1", 20), seen("h1", 300), seen("h2", 60)],
                 ("h1",)) == ("h1", Rule.HYBRID_LOCAL)
    strict = [CLOUD, hybrid("h1", overflow_rtt_ms=50.0), hybrid("h2", overflow_rtt_ms=400.0)]
    assert place(strict, [seen("cloud-1", 20), seen("h1", 60), seen("h2", 60)]) == (
        "cloud-1", Rule.OVERFLOW_DELAY)


def test_the_delay_exclusion_says_how_far() -> None:
    a = assign(org="acme", profile=DeviceProfile.DESKTOP, nodes=[CLOUD, hybrid("h1")],
               results=[seen("cloud-1", 20), seen("h1", 310)], meeting_nodes=frozenset())
    excluded = {c.node_id: c.excluded for c in a.reason.candidates}["h1"]
    assert excluded == "overflow by delay: 310 ms to cluster hq, at least its 250 ms"


def test_a_far_cluster_that_is_also_full_overflows_by_delay() -> None:
    assert place([CLOUD, hybrid("h1", load=1.0)], [seen("cloud-1", 20), seen("h1", 300)],
                 ("h1",)) == ("cloud-1", Rule.OVERFLOW_DELAY)


# ------------------------------------------------------------------ (3) private meetings


def test_a_private_meeting_never_uses_a_cloud_node() -> None:
    """The cloud node is nearer and idle; the private meeting's device goes on the cluster
    all the same, and the cloud node's exclusion says why."""
    a = assign(org="acme", profile=DeviceProfile.DESKTOP, nodes=[CLOUD, hybrid("h1")],
               results=[seen("cloud-1", 1), seen("h1", 30)], meeting_nodes=frozenset(),
               scope=PRIVATE)
    assert (a.node.id, a.reason.rule) == ("h1", Rule.HYBRID_LOCAL)
    assert {c.node_id: c.excluded for c in a.reason.candidates}["cloud-1"] == (
        "private meeting: media stays on the org's clusters")


def test_a_private_meeting_keeps_a_far_device_on_the_cluster() -> None:
    """Overflow by delay would send it to the cloud, which a private meeting never does."""
    assert place([CLOUD, hybrid("h1")], [seen("cloud-1", 10), seen("h1", 400)],
                 scope=PRIVATE) == ("h1", Rule.HYBRID_LOCAL)


def test_a_private_meeting_still_cascades_inside_the_cluster() -> None:
    assert place([CLOUD, hybrid("h1", load=1.0), hybrid("h2")],
                 [seen("cloud-1", 1), seen("h1", 3), seen("h2", 3)], ("h1",),
                 scope=PRIVATE) == ("h2", Rule.INTRA_CLUSTER)


def test_a_device_that_reaches_no_node_of_the_clusters_is_refused() -> None:
    with pytest.raises(PrivateMeetingUnreachable) as caught:
        assign(org="acme", profile=DeviceProfile.DESKTOP, nodes=[CLOUD, hybrid("h1")],
               results=[seen("cloud-1", 10), seen("h1", None)], meeting_nodes=frozenset(),
               scope=PRIVATE)
    refused = caught.value
    assert refused.code == "private_meeting_unreachable" and status_of(refused) == 409
    assert isinstance(refused, NoCandidate)  # a join refused like any other, and noted
    assert refused.reason is not None and refused.reason.rule == Rule.PRIVATE_REFUSED
    assert "reached no node of them" in str(refused)
    assert "join from the organisation's network" in str(refused)


def test_a_full_private_cluster_refuses_and_says_it_is_full() -> None:
    with pytest.raises(PrivateMeetingUnreachable, match="every node of them this device "
                       "reached is full"):
        place([CLOUD, hybrid("h1", load=1.0)], [seen("cloud-1", 1), seen("h1", 3)], ("h1",),
              scope=PRIVATE)


def test_an_org_without_clusters_cannot_hold_a_private_meeting() -> None:
    with pytest.raises(PrivateMeetingUnreachable):
        place([CLOUD], [seen("cloud-1", 1)], scope=PRIVATE)


# ------------------------------------------------------------------ (4) guests


def test_a_guest_is_placed_on_the_cloud() -> None:
    """A device of globex in acme's meeting, though it reached acme's node (a visitor on
    the premises): the cloud, rule ``guest``; the cascade links it to the meeting."""
    a = assign(org="globex", profile=DeviceProfile.DESKTOP, nodes=[CLOUD, hybrid("h1")],
               results=[seen("cloud-1", 20), seen("h1", 2)], meeting_nodes=frozenset({"h1"}),
               scope=Scope(meeting_org="acme"))
    assert (a.node.id, a.reason.rule) == ("cloud-1", Rule.GUEST)
    assert {c.node_id: c.excluded for c in a.reason.candidates}["h1"] == (
        "a guest of another org: placed on the cloud")


def test_guests_may_be_let_onto_the_clusters() -> None:
    assert place([CLOUD, hybrid("h1")], [seen("cloud-1", 20), seen("h1", 2)], ("h1",),
                 scope=Scope(meeting_org="acme", guests_on_clusters=True),
                 org="globex") == ("h1", Rule.HYBRID_LOCAL)


def test_a_guest_never_uses_its_own_orgs_cluster_for_another_orgs_meeting() -> None:
    assert place([CLOUD, hybrid("g1", org="globex")], [seen("cloud-1", 20), seen("g1", 2)],
                 scope=Scope(meeting_org="acme"), org="globex") == ("cloud-1", Rule.GUEST)


def test_a_guest_in_a_private_meeting_is_on_the_clusters_or_refused() -> None:
    assert place([CLOUD, hybrid("h1")], [seen("cloud-1", 20), seen("h1", 2)],
                 scope=PRIVATE, org="globex") == ("h1", Rule.HYBRID_LOCAL)
    with pytest.raises(PrivateMeetingUnreachable):
        place([CLOUD, hybrid("h1")], [seen("cloud-1", 20)], scope=PRIVATE, org="globex")


# ------------------------------------------------------------------ WebRTC endpoints


def webrtc(nodes: list[NodeInfo], meeting: tuple[str, ...] = (), scope: Scope | None = None,
           org: str = "acme") -> tuple[str, str]:
    a = assign_webrtc(org=org, nodes=nodes, meeting_nodes=frozenset(meeting),
                      scope=scope or Scope(meeting_org="acme"))
    return a.node.id, a.reason.rule


def test_webrtc_endpoints_follow_the_cluster_rules() -> None:
    assert webrtc([CLOUD, hybrid("h1", load=1.0), hybrid("h2")], ("h1",)) == (
        "h2", Rule.INTRA_CLUSTER)
    assert webrtc([CLOUD, hybrid("h1")], ("h1",), org="globex") == ("cloud-1", Rule.GUEST)
    assert webrtc([CLOUD, hybrid("h1")], scope=PRIVATE) == ("h1", Rule.HYBRID_LOCAL)
    with pytest.raises(PrivateMeetingUnreachable):
        webrtc([CLOUD, hybrid("h1", load=1.0)], ("h1",), scope=PRIVATE)


# ------------------------------------------------------------------ who dials a cascade


@pytest.mark.parametrize(("new", "other", "initiator"), [
    ("h2", "h1", "h1"),  # intra-cluster: the node already in the meeting dials, on the premises
    ("h1", "cloud-1", "h1"),  # a hybrid node only connects out
    ("cloud-1", "h1", "h1"),
    ("cloud-2", "cloud-1", "cloud-2"),  # two cloud nodes: the new one
])
def test_who_dials_a_cascade(new: str, other: str, initiator: str) -> None:
    """Seed: the hybrid node "always initiates any needed connections"."""
    info = {n.id: n for n in (hybrid("h1"), hybrid("h2"), CLOUD, node("cloud-2"))}
    assert roles(info[new], info[other], new, other) == (
        initiator, other if initiator == new else new)
