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

from edge.flags import count, seconds, setting

TOTAL_CAP: Final = "total_cap"
PER_SOURCE_CAP: Final = "per_source_cap"


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Bounds of a stream listener (the cloud's HTTPS, a media node's TCP and TLS); every
    duration in seconds (0 disables it). Each is a flag of the service that holds it, with
    that service's defaults (:func:`edge.flags.group`); these are a media node's."""

    max_connections: int = setting(4096, "open connections accepted in total, all sources "
                                   "together", type=count())
    max_connections_per_source: int = setting(
        1024, "open connections from one IP address (an office behind one NAT address "
        "counts once)", type=count())
    handshake_s: float = setting(10.0, "close a TLS connection whose handshake takes longer "
                                 "(0: no limit)", type=seconds(zero=True))
    first_message_s: float = setting(10.0, "close a connection whose first whole message "
                                     "takes longer", type=seconds())
    idle_s: float = setting(60.0, "close a connection without a whole message for this long",
                            type=seconds())


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

    @classmethod
    def within(cls, limits: ConnectionLimits, refusals: Counter[str] | None = None
               ) -> Admission:
        """The admission that caps connections as ``limits`` say."""
        return cls(limits.max_connections, limits.max_connections_per_source, refusals)

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
