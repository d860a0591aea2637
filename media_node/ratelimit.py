"""Token buckets per source address for unauthenticated STUN (no reflection floods).

A discovery probe or a request the validator rejects costs one token from
its source IP's bucket; an empty bucket means the request is dropped and
counted. Authenticated leg requests are never limited. The caller passes
``now`` (docs/design.md, "Code conventions": no clock in the core).
"""

from __future__ import annotations


class SourceLimiter:
    __slots__ = ("_buckets", "burst", "max_sources", "rate")

    def __init__(self, rate: float, burst: float, max_sources: int = 65536) -> None:
        self.rate = rate  # tokens per second; <= 0 disables limiting
        self.burst = burst
        self.max_sources = max_sources
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, source: str, now: float) -> bool:
        if self.rate <= 0:
            return True
        tokens, last = self._buckets.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[source] = (tokens, now)
            return False
        if len(self._buckets) >= self.max_sources and source not in self._buckets:
            self._prune(now)
        self._buckets[source] = (tokens - 1.0, now)
        return True

    def _prune(self, now: float) -> None:
        """Forget sources whose buckets have refilled (they look like new sources anyway)."""
        full_after = self.burst / self.rate
        self._buckets = {s: b for s, b in self._buckets.items() if now - b[1] < full_after}
        if len(self._buckets) >= self.max_sources:  # all busy: forget the oldest half
            keep = sorted(self._buckets.items(), key=lambda kv: kv[1][1])[self.max_sources // 2:]
            self._buckets = dict(keep)

    def __len__(self) -> int:
        return len(self._buckets)
