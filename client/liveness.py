"""Is the media leg alive? A judgement from times alone (no sockets, no clock of its own).

A leg is alive while the node is heard: a decrypted media packet or an
authenticated answer to a consent check (RFC 7675). When a leg has been quiet
for ``check_after_s`` (the others may only be muted), the device sends a
consent check of its own; when nothing at all has come for ``silent_after_s``
the leg is silent and the device asks the cloud for another node itself,
without waiting for the cloud to notice the node's failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class LegHealth(Enum):
    ALIVE = "alive"
    CHECK = "check"  # quiet: send a consent check now
    SILENT = "silent"  # no media and no consent answer: ask for reassignment


@dataclass(frozen=True, slots=True)
class SilencePolicy:
    check_after_s: float = 0.5
    silent_after_s: float = 1.5

    def judge(self, heard_at: float, now: float) -> LegHealth:
        """``heard_at``: when the node was last heard (or the leg latched)."""
        quiet = now - heard_at
        if quiet >= self.silent_after_s:
            return LegHealth.SILENT
        if quiet >= self.check_after_s:
            return LegHealth.CHECK
        return LegHealth.ALIVE
