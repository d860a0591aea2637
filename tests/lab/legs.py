"""What a lab stack's media nodes logged: the participants' legs latched so far.

A lab test that needs two parties to overlap starts the first, waits for its leg to
latch here, then starts the second: however slowly a busy machine starts a process,
the second always meets the first (defect pinned down: two parties started together
for a fixed few seconds could miss each other).
"""

from __future__ import annotations

import re
from pathlib import Path


def latched(state: Path) -> int:
    """Participants' legs (not cascades) latched so far, as ``state``'s node logs say."""
    return sum(len(re.findall(r"leg (?!cas-)\S+ latched on", log.read_text(errors="replace")))
               for log in state.glob("node-*.log"))
