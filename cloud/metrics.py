"""The cloud's Prometheus metrics (prometheus_client: HELP and TYPE on every series).

One registry per application, so that several clouds in one process (tests) never share a
series. Counters and histograms are updated where things happen; the gauges (devices,
meetings, nodes by health …) are set from the store at scrape time. Call quality is also kept
per transport for the operator's console.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from dataclasses import dataclass

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from wire.models import CallMetrics

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

#: Seconds. A join allocates a leg on a node over its control channel: milliseconds on a LAN,
#: hundreds across regions.
JOIN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Seconds from the join request to the first media packet, as clients measure it: a probe,
#: the latch, a fallback rung or two.
MEDIA_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


@dataclass(slots=True)
class Quality:
    """End-of-call reports of one transport, summed (for means)."""

    calls: int = 0
    loss: float = 0.0
    jitter_ms: float = 0.0
    rtt_ms: float = 0.0
    rtt_reports: int = 0

    def as_dict(self) -> dict[str, float | int | None]:
        n = max(self.calls, 1)
        return {"calls": self.calls, "loss": round(self.loss / n, 4),
                "jitter_ms": round(self.jitter_ms / n, 2),
                "rtt_ms": round(self.rtt_ms / self.rtt_reports, 2) if self.rtt_reports else None}


class CloudMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.joins = Counter("pinhole_joins", "Joins answered, by the first rung of the plan.",
                             ["transport"], registry=r)
        self.calls = Counter("pinhole_calls",
                             "End-of-call reports received, by the transport the call ended on.",
                             ["transport"], registry=r)
        self.responses = Counter("pinhole_http_responses", "HTTP responses, by status class.",
                                 ["class"], registry=r)
        self.reports = Counter("pinhole_reports", "Reachability reports stored.", registry=r)
        self.operator_refusals = Counter(
            "pinhole_operator_refusals",
            "Console requests and logins refused the operator credential, by reason.",
            ["reason"], registry=r)
        self.cascades_opened = Counter("pinhole_cascades_opened",
                                       "Cascade legs opened between two nodes.", registry=r)
        self.reassignments = Counter("pinhole_reassignments",
                                     "Participants placed again after their node failed.",
                                     registry=r)
        self.floor_changes = Counter(
            "pinhole_floor_changes",
            "Content floor changes: granted, taken_over, released, freed (its presenter left).",
            ["kind"], registry=r)
        self.placements = Counter(
            "pinhole_placements",
            "Participants placed (joins, moves), by the assignment's rule: hybrid-local, "
            "intra-cluster, hybrid-overflow (capacity), overflow-delay, guest, lowest-score, "
            "meeting-node, lowest-load; private-refused counts refusals.",
            ["rule"], registry=r)
        self.join_latency = Histogram(
            "pinhole_join_latency_seconds",
            "Join request to answer: assignment and the leg allocated on the node.",
            buckets=JOIN_BUCKETS, registry=r)
        self.time_to_media = Histogram(
            "pinhole_time_to_media_seconds",
            "Join request to the first media packet received, as clients report it, by the "
            "transport the call ended on.", ["transport"], buckets=MEDIA_BUCKETS, registry=r)
        self.call_loss = Histogram(
            "pinhole_call_loss_ratio", "Packet loss of ended calls, as clients report it.",
            ["transport"], buckets=(0.0, 0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
            registry=r)
        self.devices = Gauge("pinhole_devices", "Registered devices.", registry=r)
        self.meetings = Gauge("pinhole_meetings", "Meetings with participants.", registry=r)
        self.participants = Gauge("pinhole_participants", "Participants in meetings.",
                                  registry=r)
        self.fresh_reports = Gauge("pinhole_fresh_reports",
                                   "Reachability reports younger than the probe TTL.",
                                   registry=r)
        self.nodes = Gauge("pinhole_nodes", "Media nodes known to this replica, by health.",
                           ["health"], registry=r)
        self.connections = Gauge("pinhole_connections", "Open HTTP connections.", registry=r)
        self.events_websockets = Gauge("pinhole_events_websockets",
                                       "Open events WebSockets of devices.", registry=r)
        self.bus_forged_messages = Gauge(
            "pinhole_bus_forged_messages",
            "Pub/sub commands between replicas ignored for a bad HMAC.", registry=r)
        self.event_subscriptions_lost = Gauge(
            "pinhole_event_subscriptions_lost",
            "Device event subscriptions to the store lost (each is made again).", registry=r)
        self.events_replayed = Gauge(
            "pinhole_events_replayed",
            "Device events read from the device's event log in the store: published while "
            "its subscription was not in place.", registry=r)
        self.event_gaps = Gauge(
            "pinhole_event_gaps",
            "Subscriptions made again after the device's event log had dropped events not "
            "yet delivered.", registry=r)
        self.node_refused_commands = Gauge(
            "pinhole_node_refused_commands",
            "Commands this replica's nodes answered with control_refused.", registry=r)
        #: connections refused, by reason (kept by edge.admission.Admission, read at scrape)
        self.refusals: collections.Counter[str] = collections.Counter()
        self.meetings_forgotten = 0
        r.register(_Tallies(self))
        self.quality: dict[str, Quality] = {}

    def joined(self, transport: str, seconds: float) -> None:
        self.joins.labels(transport).inc()
        self.join_latency.observe(seconds)

    def call_ended(self, call: CallMetrics) -> None:
        self.calls.labels(call.transport).inc()
        self.call_loss.labels(call.transport).observe(call.loss)
        if call.time_to_media_ms is not None:
            self.time_to_media.labels(call.transport).observe(call.time_to_media_ms / 1000)
        q = self.quality.setdefault(call.transport, Quality())
        q.calls += 1
        q.loss += call.loss
        q.jitter_ms += call.jitter_ms
        if call.rtt_ms is not None:
            q.rtt_ms += call.rtt_ms
            q.rtt_reports += 1

    def render(self) -> bytes:
        """The Prometheus text exposition format."""
        return prometheus_client.generate_latest(self.registry)


class _Tallies(Collector):
    """Counts kept as plain numbers by code that must not depend on prometheus_client."""

    def __init__(self, metrics: CloudMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        refusals = CounterMetricFamily("pinhole_connection_refusals",
                                       "Connections refused, by reason.", labels=["reason"])
        for reason, n in sorted(self.metrics.refusals.items()):
            refusals.add_metric([reason], n)
        yield refusals
        yield CounterMetricFamily("pinhole_meetings_forgotten",
                                  "Ended meetings deleted after the meeting retention.",
                                  value=self.metrics.meetings_forgotten)
