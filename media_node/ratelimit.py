"""Token buckets for unauthenticated STUN: per flow, under a ceiling per source IP.

A discovery probe or a request the validator rejects costs one token from
its *flow's* bucket (the 5-tuple: listener, source IP and source port; a
TCP/TLS connection is its own flow) and one from its *source IP's* bucket.
An empty bucket of either kind drops the request (counted by the engine).

Why two levels: keyed by source IP alone, every device of an enterprise
behind one NAT address shared one small bucket, so a large office could not
probe at all at 9 a.m. The flow bucket keeps any one sender to ``rate``
(what the old per-IP bucket allowed); the IP ceiling (``ip_rate``,
``ip_burst``), sized for a whole office, still bounds what any one address,
or a spoofer rotating source ports, can make the node send (answers are at
most twice the request: no reflection amplification). Authenticated leg
requests are never limited. The caller passes ``now`` (docs/design.md, "Code
conventions": no clock in the core). Memory is bounded: at most ``max_keys`` buckets of each kind.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class _Buckets(Generic[K]):
    """Token buckets by key; buckets that have refilled are forgotten when space is needed."""

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[K, tuple[float, float]] = {}

    def level(self, key: K, now: float) -> float:
        tokens, last = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - last) * self.rate)

    def set(self, key: K, tokens: float, now: float) -> None:
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            self._prune(now)
        self._buckets[key] = (tokens, now)

    def _prune(self, now: float) -> None:
        """Forget keys whose buckets have refilled (they look like new keys anyway)."""
        full_after = self.burst / self.rate
        self._buckets = {k: b for k, b in self._buckets.items() if now - b[1] < full_after}
        if len(self._buckets) >= self.max_keys:  # all busy: forget the oldest half
            keep = sorted(self._buckets.items(), key=lambda kv: kv[1][1])[self.max_keys // 2:]
            self._buckets = dict(keep)

    def __len__(self) -> int:
        return len(self._buckets)


class SourceLimiter:
    """``allow(ip, flow, now)``: a token from the flow's bucket and one from the IP's."""

    __slots__ = ("_flows", "_ips", "rate")

    def __init__(self, rate: float, burst: float, ip_rate: float = 1000.0,
                 ip_burst: float = 4000.0, max_keys: int = 65536) -> None:
        self.rate = rate  # tokens per second per flow; <= 0 disables limiting
        self._flows: _Buckets[Hashable] = _Buckets(rate, burst, max_keys)
        self._ips: _Buckets[str] = _Buckets(max(ip_rate, rate), max(ip_burst, burst), max_keys)

    def allow(self, ip: str, flow: Hashable, now: float) -> bool:
        if self.rate <= 0:
            return True
        flow_tokens = self._flows.level(flow, now)
        ip_tokens = self._ips.level(ip, now)
        if flow_tokens < 1.0 or ip_tokens < 1.0:
            self._flows.set(flow, flow_tokens, now)
            self._ips.set(ip, ip_tokens, now)
            return False
        self._flows.set(flow, flow_tokens - 1.0, now)
        self._ips.set(ip, ip_tokens - 1.0, now)
        return True

    def __len__(self) -> int:
        return len(self._flows) + len(self._ips)
