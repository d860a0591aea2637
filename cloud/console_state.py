"""What the operator's console shows, as JSON-ready data: nodes, meetings, calls, history.

A node that is down (unhealthy, or its control channel gone) carries no legs
and no load: its legs were moved, and ``moved`` says where, from the
failovers in the event history since the node last came up.
"""

from __future__ import annotations

from typing import Any

from cloud.history import HistoryEvent
from cloud.state import Cloud
from wire.transports import LADDER


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def moved_legs(history: list[HistoryEvent]) -> dict[str, list[dict[str, Any]]]:
    """Per node: the failovers away from it since it last came up (newest first)."""
    moved: dict[str, list[dict[str, Any]]] = {}
    came_up: set[str] = set()
    for event in history:  # newest first
        if event.node is None or event.node in came_up:
            continue
        if event.kind == "node_up":
            came_up.add(event.node)
        elif event.kind == "failover":
            moved.setdefault(event.node, []).append({
                "participant": event.participant, "device": event.device,
                "meeting": event.meeting, "to": event.to_node, "at": event.at,
                "gap_s": event.gap_s})
    return moved


def _nodes(cloud: Cloud, history: list[HistoryEvent],
           leg_stats: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    registry = cloud.registry
    moved = moved_legs(history)
    nodes = []
    for info in sorted(registry.nodes(), key=lambda n: (n.kind, n.region, n.cluster or "",
                                                        n.id)):
        state = registry.get(info.id)
        drops: dict[str, int] = {}
        packets = [0, 0]
        control = ("another replica" if state is None else
                   "connected" if state.ws is not None and not state.ws.closed else "down")
        down = not info.healthy or control == "down"
        if state is not None:
            for leg_id, counters in state.stats.items():
                if not down:  # a down node's last heartbeat names legs that moved since
                    leg_stats[leg_id] = {"packets_in": counters.packets_in,
                                         "packets_out": counters.packets_out,
                                         "drops": sum(counters.drops.values())}
                packets[0] += counters.packets_in
                packets[1] += counters.packets_out
                for reason, n in counters.drops.items():
                    drops[reason] = drops.get(reason, 0) + n
        legs = state.legs if state is not None and not down else None
        capacity = state.capacity if state is not None else None
        plane = state.plane if state is not None else None
        nodes.append({
            "id": info.id, "kind": info.kind, "region": info.region, "org": info.org,
            "cluster": info.cluster,
            "address": info.address, "endpoints": [f"{e.rung}:{e.port}" for e in info.endpoints],
            "healthy": info.healthy, "status": "down" if down else "up", "control": control,
            "heartbeat_age_s": _round(registry.heartbeat_age(info.id), 1),
            "legs": legs, "capacity": capacity, "plane": plane,
            "load": _round(legs / capacity, 4) if legs is not None and capacity else None,
            "moved": moved.get(info.id, []) if down else [],
            "drops": dict(sorted(drops.items())), "packets_in": packets[0],
            "packets_out": packets[1],
        })
    return nodes


async def snapshot(cloud: Cloud) -> dict[str, Any]:
    """Everything the console shows."""
    history = await cloud.history.recent()
    leg_stats: dict[str, dict[str, int]] = {}
    nodes = _nodes(cloud, history, leg_stats)
    meetings = []
    ended = 0
    live_rungs: dict[str, int] = {}
    names: dict[str, str] = {}
    for meeting in sorted(await cloud.store.list_meetings(), key=lambda m: -m.created_at):
        if not meeting.participants:
            ended += 1  # ended meetings are counted, not listed
            continue
        people = []
        for p in meeting.participants:
            if p.device_id not in names:
                device = await cloud.store.get_device(p.device_id)
                names[p.device_id] = device.name if device is not None else p.device_id
            reported = cloud.live.get(p.id)
            if p.rung:
                live_rungs[p.rung] = live_rungs.get(p.rung, 0) + 1
            people.append({
                "id": p.id, "device": names[p.device_id], "node": p.node_id, "rung": p.rung,
                "content_rung": p.content_rung,
                "loss": _round(reported.loss, 4) if reported else None,
                "jitter_ms": _round(reported.jitter_ms) if reported else None,
                "rtt_ms": _round(reported.rtt_ms) if reported else None,
                **leg_stats.get(p.leg_id, {}),
            })
        presenter = next((p for p in people if meeting.floor is not None
                          and p["id"] == meeting.floor.presenter), None)
        meetings.append({"id": meeting.id, "title": meeting.title, "org": meeting.org,
                         "created_at": meeting.created_at, "participants": people,
                         # who shares content, and on which rung its content leg latched
                         "presenter": None if presenter is None else {
                             "id": presenter["id"], "device": presenter["device"],
                             "rung": presenter["content_rung"]},
                         "cascades": [f"{c.from_node} → {c.to_node}"
                                      + (" (content)" if c.content else "")
                                      for c in meeting.cascades]})
    quality = cloud.metrics.quality
    return {
        "nodes": nodes,
        "meetings": meetings,
        "ended_meetings": ended,
        "calls": {rung: q.as_dict() for rung, q in sorted(quality.items())},
        "ladder": [{"rung": r.name, "live": live_rungs.get(r.name, 0),
                    "ended": quality[r.name].calls if r.name in quality else 0}
                   for r in LADDER],
        "history": [e.as_dict() for e in history],
    }
