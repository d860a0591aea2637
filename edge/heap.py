"""The collector's settings for a long-running service (cloud, media node).

A service builds everything it keeps for its whole life at start-up: modules,
the web application, routes, models' validators. Python's cyclic collector
would walk all of it again at every full collection, and a full collection
of a started cloud stalls its event loop for tens of milliseconds: the p99
of joins at 500/s was those stalls (``bench/join.py``, open loop).
:func:`settle` collects once and moves what survived to the permanent
generation (``gc.freeze``), so later collections walk only what the service
made since; and it makes the youngest generation larger, so a burst of
requests (each allocating a few hundred short-lived objects) does not set
off a collection every few requests.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000  # allocations between young collections (Python's default: 700)


def settle() -> None:
    """Call once the service has started, before it serves."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
