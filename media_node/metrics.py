"""Prometheus exposition for the node (``/metrics``) and a liveness probe (``/healthz``).

Built on prometheus_client: every series has HELP and TYPE. The engine keeps its own plain
counters (no clock, no library calls per packet); a collector turns them into metric families
at scrape time. The relay latency histogram is the one series fed from the I/O edge:
arrival to every forwarded copy handed to its socket, the simulated distance
(``--simulated-rtt-ms``) excluded, for one packet in ``RelayTiming.every`` — timed by the
data plane for what it relays and by the listeners around ``Engine.on_packet`` for the
rest, merged at scrape time.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable, Iterator

import prometheus_client
from aiohttp import web
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from edge.admission import Admission
from media_node.engine import Engine
from media_node.plane import RELAY_BUCKETS, TIMED_EVERY

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

class RelayTiming(Collector):
    """A sampled histogram of the relay's handling time per packet: the data plane's
    timed packets (:meth:`Plane.timing`) and those the listeners time around
    :meth:`Engine.on_packet`, one series."""

    def __init__(self, registry: CollectorRegistry, every: int = TIMED_EVERY,
                 plane: Callable[[], tuple[list[int], float]] | None = None) -> None:
        self.every = every
        self._seen = 0
        self._counts = [0] * (len(RELAY_BUCKETS) + 1)  # per bucket, +Inf last
        self._sum = 0.0
        self._plane = plane
        registry.register(self)

    def due(self) -> bool:
        """True for the packets to time (cheap: one increment and a modulo)."""
        self._seen += 1
        return self._seen % self.every == 0

    def observe(self, started: float) -> None:
        value = time.perf_counter() - started
        self._counts[bisect.bisect_left(RELAY_BUCKETS, value)] += 1  # le: value <= bound
        self._sum += value

    def collect(self) -> Iterator[Metric]:
        counts, total = list(self._counts), self._sum
        if self._plane is not None:
            more, more_sum = self._plane()
            counts = [a + b for a, b in zip(counts, more, strict=True)]
            total += more_sum
        cumulative = list(itertools.accumulate(counts))
        bounds = [repr(float(b)) for b in RELAY_BUCKETS] + ["+Inf"]
        yield HistogramMetricFamily(
            "pinhole_node_relay_latency_seconds",
            "Time from a packet's arrival to its forwarded copies handed to the sockets "
            f"(one packet in {self.every} timed; simulated distance excluded).",
            buckets=list(zip(bounds, cumulative, strict=True)), sum_value=total)


class EngineCollector(Collector):
    """The engine's counters, read at scrape time."""

    def __init__(self, engine: Engine, admission: Admission,
                 connected: Callable[[], bool]) -> None:
        self.engine = engine
        self.admission = admission
        self.connected = connected

    def collect(self) -> Iterator[Metric]:
        e = self.engine
        drops = CounterMetricFamily("pinhole_node_drops", "Packets dropped, by reason.",
                                    labels=["reason"])
        for reason, n in sorted(e.drops.items()):
            drops.add_metric([reason], n)
        yield drops
        answers = CounterMetricFamily("pinhole_node_stun_answers",
                                      "STUN responses sent, by kind.", labels=["kind"])
        for kind, n in sorted(e.stun_answers.items()):
            answers.add_metric([kind], n)
        yield answers
        packets = CounterMetricFamily("pinhole_node_packets",
                                      "SRTP/SRTCP packets relayed, by direction.",
                                      labels=["direction"])
        packets.add_metric(["in"], e.packets_in)
        packets.add_metric(["out"], e.packets_out)
        yield packets
        octets = CounterMetricFamily("pinhole_node_bytes",
                                     "SRTP/SRTCP bytes relayed, by direction.",
                                     labels=["direction"])
        octets.add_metric(["in"], e.bytes_in)
        octets.add_metric(["out"], e.bytes_out)
        yield octets
        content = CounterMetricFamily("pinhole_node_content_bytes",
                                      "SRTP/SRTCP bytes of content (screen sharing) legs, by "
                                      "direction (also in pinhole_node_bytes).",
                                      labels=["direction"])
        content.add_metric(["in"], e.content_total("bytes_in"))
        content.add_metric(["out"], e.content_total("bytes_out"))
        yield content
        plane = e.plane
        info = GaugeMetricFamily("pinhole_node_plane_info",
                                 "The data plane relaying UDP media (compiled or python) and "
                                 "why it is that one.", labels=["plane", "reason"])
        info.add_metric([plane.kind.value, plane.reason.value], 1)
        yield info
        yield CounterMetricFamily("pinhole_node_plane_relayed",
                                  "SRTP packets the data plane relayed (counted in "
                                  "pinhole_node_packets too; the engine relayed the rest).",
                                  value=plane.relayed)
        yield GaugeMetricFamily("pinhole_node_legs", "Legs allocated on this node.",
                                value=len(e.legs))
        yield GaugeMetricFamily("pinhole_node_latched_legs", "Legs latched to a path.",
                                value=sum(1 for leg in e.legs.values() if leg.sink))
        yield GaugeMetricFamily("pinhole_node_load", "Legs in use over capacity (0 to 1).",
                                value=e.load())
        yield GaugeMetricFamily("pinhole_node_connections", "Open TCP/TLS media connections.",
                                value=self.admission.open)
        refusals = CounterMetricFamily("pinhole_node_connection_refusals",
                                       "TCP/TLS connections refused or closed, by reason.",
                                       labels=["reason"])
        for reason, n in sorted(self.admission.refusals.items()):
            refusals.add_metric([reason], n)
        yield refusals
        yield GaugeMetricFamily("pinhole_node_control_connected",
                                "1 while the control channel to the cloud is up.",
                                value=int(self.connected()))


def registry_for(engine: Engine, admission: Admission,
                 connected: Callable[[], bool]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(EngineCollector(engine, admission, connected))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition format."""
    return prometheus_client.generate_latest(registry)


def make_app(engine: Engine, admission: Admission, connected: Callable[[], bool],
             registry: CollectorRegistry | None = None) -> web.Application:
    scraped = registry if registry is not None else registry_for(engine, admission, connected)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=render(scraped),
                            headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "node_id": engine.node_id,
                                  "control": connected()})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app
