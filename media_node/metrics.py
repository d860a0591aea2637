"""Prometheus text for the node (``/metrics``) and a liveness probe (``/healthz``)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from media_node.engine import Engine
from wire.admission import Admission


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(engine: Engine, admission: Admission, control_connected: bool) -> str:
    lines = [
        "# HELP pinhole_node_drops_total Packets dropped, by reason.",
        "# TYPE pinhole_node_drops_total counter",
    ]
    lines += [f'pinhole_node_drops_total{{reason="{_escape(r)}"}} {n}'
              for r, n in sorted(engine.drops.items())]
    lines += [
        "# HELP pinhole_node_stun_answers_total STUN responses sent, by kind.",
        "# TYPE pinhole_node_stun_answers_total counter",
    ]
    lines += [f'pinhole_node_stun_answers_total{{kind="{_escape(k)}"}} {n}'
              for k, n in sorted(engine.stun_answers.items())]
    lines += [
        "# HELP pinhole_node_packets_total SRTP/SRTCP packets relayed, by direction.",
        "# TYPE pinhole_node_packets_total counter",
        f'pinhole_node_packets_total{{direction="in"}} {engine.packets_in}',
        f'pinhole_node_packets_total{{direction="out"}} {engine.packets_out}',
        "# HELP pinhole_node_bytes_total SRTP/SRTCP bytes relayed, by direction.",
        "# TYPE pinhole_node_bytes_total counter",
        f'pinhole_node_bytes_total{{direction="in"}} {engine.bytes_in}',
        f'pinhole_node_bytes_total{{direction="out"}} {engine.bytes_out}',
        "# HELP pinhole_node_legs Legs allocated on this node.",
        "# TYPE pinhole_node_legs gauge",
        f"pinhole_node_legs {len(engine.legs)}",
        "# HELP pinhole_node_latched_legs Legs latched to a path.",
        "# TYPE pinhole_node_latched_legs gauge",
        f"pinhole_node_latched_legs {sum(1 for leg in engine.legs.values() if leg.sink)}",
        "# HELP pinhole_node_connections Open TCP/TLS media connections.",
        "# TYPE pinhole_node_connections gauge",
        f"pinhole_node_connections {admission.open}",
        "# HELP pinhole_node_connection_refusals_total TCP/TLS connections refused or closed, "
        "by reason.",
        "# TYPE pinhole_node_connection_refusals_total counter",
        *(f'pinhole_node_connection_refusals_total{{reason="{_escape(r)}"}} {n}'
          for r, n in sorted(admission.refusals.items())),
        "# HELP pinhole_node_control_connected 1 while the control channel is up.",
        "# TYPE pinhole_node_control_connected gauge",
        f"pinhole_node_control_connected {int(control_connected)}",
    ]
    return "\n".join(lines) + "\n"


def make_app(engine: Engine, admission: Admission,
             connected: Callable[[], bool]) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=render(engine, admission, connected()),
                            content_type="text/plain")

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "node_id": engine.node_id,
                                  "control": connected()})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app
