"""The cloud's Prometheus counters and their text exposition."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class CloudMetrics:
    joins_by_transport: Counter[str] = field(default_factory=Counter)
    calls_by_transport: Counter[str] = field(default_factory=Counter)
    responses_by_class: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)  # connections refused, by reason
    reports: int = 0
    cascades_opened: int = 0
    reassignments: int = 0
    meetings_forgotten: int = 0

    def render(self, gauges: dict[str, float], labelled: dict[str, dict[str, float]]) -> str:
        """Prometheus text format 0.0.4."""
        lines: list[str] = []
        for name, value in sorted(gauges.items()):
            lines += [f"# TYPE pinhole_{name} gauge", f"pinhole_{name} {value}"]
        for name, series in sorted(labelled.items()):
            label = "health" if name == "nodes" else "transport"
            lines.append(f"# TYPE pinhole_{name} gauge")
            lines += [f'pinhole_{name}{{{label}="{k}"}} {v}' for k, v in sorted(series.items())]
        counters = {
            "joins_total": ("transport", self.joins_by_transport),
            "calls_total": ("transport", self.calls_by_transport),
            "http_responses_total": ("class", self.responses_by_class),
            "connection_refusals_total": ("reason", self.refusals),
        }
        for name, (label, counter) in counters.items():
            lines.append(f"# TYPE pinhole_{name} counter")
            lines += [f'pinhole_{name}{{{label}="{k}"}} {v}' for k, v in sorted(counter.items())]
        for name, value in (("reports_total", self.reports),
                            ("cascades_opened_total", self.cascades_opened),
                            ("reassignments_total", self.reassignments),
                            ("meetings_forgotten_total", self.meetings_forgotten)):
            lines += [f"# TYPE pinhole_{name} counter", f"pinhole_{name} {value}"]
        return "\n".join(lines) + "\n"
