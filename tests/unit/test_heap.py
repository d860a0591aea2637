"""``edge.heap.settle``: a started service's heap is frozen out of the collector's walks.

The defect it pins down: a cloud taking 500 joins/s had a p99 of 87-135 ms,
and every slow join lined up with a full collection walking everything the
cloud built at start-up (``bench/join.py``, open loop). Run in a child
process: the collector's settings are process-wide.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edge import heap

PROBE = """
import gc, json
import cloud.app  # a service's start-up: modules, routes, models
from edge import heap
before = gc.get_freeze_count()
heap.settle()
print(json.dumps({"before": before, "after": gc.get_freeze_count(),
                  "threshold": gc.get_threshold()}))
"""


def test_settle_freezes_start_up_objects_and_widens_the_young_generation() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    result = json.loads(out)
    assert result["before"] == 0
    assert result["after"] > 10_000  # the cloud's modules alone are tens of thousands
    assert result["threshold"][0] == heap.YOUNG_THRESHOLD > 700


def test_both_services_settle_before_serving() -> None:
    """The cloud and the media node each call it once started (not only the bench)."""
    root = Path(__file__).resolve().parents[2]
    for path in ("cloud/__main__.py", "media_node/service.py"):
        assert "heap.settle()" in (root / path).read_text(), path
