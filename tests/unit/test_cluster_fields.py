"""What clusters and private meetings add to the wire and the store: a hybrid node's
cluster and delay threshold at registration, a meeting's ``private``, kept by the Redis
codec, and ``/metrics`` counting placements by rule (the requirement: "``/metrics`` counts
placements by rule (local, intra-cluster, overflow-capacity, overflow-delay, guest,
private-refused)")."""

from __future__ import annotations

import os
from typing import Any

import pytest
from pydantic import ValidationError

from client import cli
from cloud.assignment import Rule
from cloud.metrics import CloudMetrics
from cloud.redis_store import meeting_from_json, meeting_json
from cloud.store import MeetingRecord
from edge.flags import apply_environment
from wire.models import MeetingCreate, MeetingCreated, NodeInfo, NodeRegistration

REGISTRATION: dict[str, Any] = {
    "kind": "hybrid", "org": "acme", "region": "on-prem", "address": "10.99.0.4",
    "endpoints": [{"rung": "udp/5004", "transport": "udp", "port": 5004}]}


def test_a_registration_names_its_cluster_and_threshold() -> None:
    body = NodeRegistration.model_validate({**REGISTRATION, "cluster": "hq",
                                            "overflow_rtt_ms": 120})
    assert (body.cluster, body.overflow_rtt_ms) == ("hq", 120.0)
    older = NodeRegistration.model_validate(REGISTRATION)  # a node from before clusters
    assert (older.cluster, older.overflow_rtt_ms) == (None, 250.0)


@pytest.mark.parametrize("fields", [
    {"cluster": "head office"}, {"cluster": "x" * 65}, {"cluster": ""},
    {"overflow_rtt_ms": 0}, {"overflow_rtt_ms": -5}, {"overflow_rtt_ms": 60_001},
])
def test_a_bad_cluster_or_threshold_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        NodeRegistration.model_validate({**REGISTRATION, **fields})


def test_node_info_carries_the_cluster_to_every_replica() -> None:
    """Replicas share a registration as ``NodeInfo`` JSON (``NodeRegistry.share``)."""
    info = NodeInfo.model_validate({**REGISTRATION, "id": "h1", "cluster": "hq",
                                    "overflow_rtt_ms": 100.0})
    assert NodeInfo.model_validate_json(info.model_dump_json()) == info


def test_a_meeting_is_created_private_and_says_so() -> None:
    assert MeetingCreate.model_validate({"private": True}).private is True
    assert MeetingCreate.model_validate({}).private is False
    with pytest.raises(ValidationError):
        MeetingCreate.model_validate({"private": "maybe"})
    created = MeetingCreated.model_validate({"id": "m1", "org": "acme", "title": "",
                                             "created_at": "2026-01-01T00:00:00Z"})
    assert created.private is False  # an answer from a cloud before private meetings


def test_the_redis_codec_keeps_private() -> None:
    """A field the codec forgot would be lost on Redis: a private meeting read back as
    public would overflow to the cloud. A meeting stored before the field reads public."""
    meeting = MeetingRecord("m1", "acme", "board", 1.5, private=True)
    assert meeting_from_json(meeting_json(meeting)).private is True
    older = meeting_json(MeetingRecord("m2", "acme", "", 1.5)).replace(
        ', "private": false', "")
    assert "private" not in older and meeting_from_json(older).private is False


def test_metrics_count_placements_by_rule() -> None:
    metrics = CloudMetrics()
    for rule in (Rule.HYBRID_LOCAL, Rule.INTRA_CLUSTER, Rule.INTRA_CLUSTER,
                 Rule.PRIVATE_REFUSED):
        metrics.placements.labels(rule).inc()
    text = metrics.render().decode()
    assert "# TYPE pinhole_placements_total counter" in text
    assert 'pinhole_placements_total{rule="intra-cluster"} 2.0' in text
    assert 'pinhole_placements_total{rule="private-refused"} 1.0' in text


def test_pinhole_meeting_create_private(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pinhole meeting create --private``, or ``PINHOLE_PRIVATE=1`` like every flag."""
    parser = cli._parser()
    assert parser.parse_args(["meeting", "create", "--private"]).private is True
    assert parser.parse_args(["meeting", "create"]).private is False
    monkeypatch.setenv("PINHOLE_PRIVATE", "1")
    parser = cli._parser()
    apply_environment(parser, os.environ)
    assert parser.parse_args(["meeting", "create"]).private is True
