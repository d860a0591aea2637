"""The cloud's collaborators are passed in or declared, never probed or patched in.

Defects: ``make_app`` found the node bus with ``getattr(store, "node_bus", None)``,
and leg events reached the meetings through a closure over a list that held
the cloud once it was built (``cloud_ref[0]``).
"""

from __future__ import annotations

from cloud.leg_events import LegEventQueue
from cloud.store import MemoryStore, Store
from wire.models import LegEvent
from wire.transports import RungName


def test_the_store_declares_its_node_bus() -> None:
    """A store of one replica says it has no bus to share nodes over: ``None``."""
    store: Store = MemoryStore()
    assert store.node_bus(b"k" * 32) is None


async def test_leg_events_wait_in_order_and_the_surplus_is_counted() -> None:
    """The registry hands events to the queue it was given; past its bound they are
    dropped and counted, never raised at the control channel that read them."""
    queue = LegEventQueue(limit=2)
    events = [LegEvent(event="latched", leg_id=f"leg-{n}", rung=RungName.UDP_5004)
              for n in range(3)]
    for event in events:
        queue.put("n1", event)
    assert queue.dropped == 1
    assert [await queue.get(), await queue.get()] == [("n1", events[0]), ("n1", events[1])]
