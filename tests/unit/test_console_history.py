"""The console's event history: a bounded ring, newest first; a down node's moved legs.

Defects: the console had no event history at all; and a node that failed kept showing
its legs and load after its participants had moved, with nothing saying where to.
"""

from __future__ import annotations

import json

import pytest

from cloud.console_state import moved_legs
from cloud.history import HistoryEvent, Kind, MemoryHistory


def _event(at: float, kind: Kind = "joined", **where: str) -> HistoryEvent:
    return HistoryEvent(at=at, kind=kind, text=f"{kind} at {at}", **where)  # type: ignore[arg-type]


async def test_the_ring_keeps_the_newest_events_newest_first() -> None:
    history = MemoryHistory(size=5)
    for at in range(8):
        history.record(_event(float(at)))
    assert [e.at for e in await history.recent()] == [7.0, 6.0, 5.0, 4.0, 3.0]


def test_a_stored_event_reads_back_and_junk_is_refused() -> None:
    event = HistoryEvent(at=1.5, kind="failover", text="moved", node="node-a",
                         to_node="node-b", gap_s=0.8)
    assert HistoryEvent.from_json(json.dumps(event.as_dict())) == event
    for junk in ('[1]', '{"kind": "exploded", "at": 1, "text": ""}',
                 '{"kind": "joined", "at": 1, "text": "", "extra": 1}'):
        with pytest.raises(ValueError, match="not a history event"):
            HistoryEvent.from_json(junk)


def test_a_down_node_lists_the_legs_moved_since_it_last_came_up() -> None:
    newest_first = [
        _event(9.0, "failover", node="node-a", to_node="node-b", participant="p-2"),
        _event(8.0, "failover", node="node-a", to_node="node-c", participant="p-1"),
        _event(7.0, "node_down", node="node-a"),
        _event(6.0, "node_up", node="node-a"),
        _event(5.0, "failover", node="node-a", to_node="node-b", participant="p-0"),
    ]
    moved = moved_legs(newest_first)
    assert [(m["participant"], m["to"]) for m in moved["node-a"]] == [("p-2", "node-b"),
                                                                      ("p-1", "node-c")]
