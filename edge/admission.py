"""Connection admission: a cap on open connections, in total and per source address.

Shared by the cloud's HTTPS listener and the media node's TCP/TLS listeners;
no sockets here, the listener asks :meth:`Admission.admit` when a connection
arrives and calls :meth:`Admission.release` when it is gone. Every refusal,
here or in the listener (a missed deadline, an idle connection), is counted
by reason in ``refusals``, which the service exposes on ``/metrics``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Final

TOTAL_CAP: Final = "total_cap"
PER_SOURCE_CAP: Final = "per_source_cap"


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Bounds of one stream listener; every duration in seconds (0 disables it)."""

    max_connections: int = 4096
    max_per_source: int = 1024
    handshake_s: float = 10.0  # a TLS handshake must finish within this
    first_message_s: float = 10.0  # the first whole message must arrive within this
    idle_s: float = 60.0  # a connection with no whole message for this long is closed


class Admission:
    """Open connections by source; refuses past ``max_total`` or ``max_per_source``."""

    __slots__ = ("_by_source", "max_per_source", "max_total", "open", "refusals")

    def __init__(self, max_total: int, max_per_source: int,
                 refusals: Counter[str] | None = None) -> None:
        self.max_total = max_total
        self.max_per_source = max_per_source
        self.refusals: Counter[str] = Counter() if refusals is None else refusals
        self.open = 0
        self._by_source: dict[str, int] = {}

    def admit(self, source: str) -> bool:
        """Take a slot for a connection from ``source``; False (and counted) when full."""
        if self.open >= self.max_total:
            self.refusals[TOTAL_CAP] += 1
            return False
        held = self._by_source.get(source, 0)
        if held >= self.max_per_source:
            self.refusals[PER_SOURCE_CAP] += 1
            return False
        self._by_source[source] = held + 1
        self.open += 1
        return True

    def release(self, source: str) -> None:
        """Give back the slot of an admitted connection from ``source``."""
        held = self._by_source.get(source, 0)
        if held <= 0:
            return
        if held == 1:
            del self._by_source[source]
        else:
            self._by_source[source] = held - 1
        self.open -= 1

    def refuse(self, reason: str) -> None:
        """Count a refusal decided elsewhere (a missed deadline, an idle connection)."""
        self.refusals[reason] += 1

    def held_by(self, source: str) -> int:
        return self._by_source.get(source, 0)
