"""Receive statistics per RFC 3550: loss from sequence numbers, interarrival jitter."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ReceiveStats:
    """One remote source's reception, updated per packet (RFC 3550 §6.4.1, §A.3, §A.8)."""

    clock_rate: int = 8000
    received: int = 0
    base_seq: int = -1
    max_ext_seq: int = -1
    jitter: float = 0.0  # in RTP timestamp units
    _last_transit: float | None = None

    def update(self, sequence: int, timestamp: int, arrival_s: float) -> None:
        if self.base_seq < 0:
            self.base_seq = self.max_ext_seq = sequence
        else:
            # extend the 16-bit sequence number across wrap-around (RFC 3550 §A.1)
            cycle = self.max_ext_seq & ~0xFFFF
            candidate = cycle | sequence
            if candidate < self.max_ext_seq - 0x8000:
                candidate += 0x10000
            elif candidate > self.max_ext_seq + 0x8000:
                candidate -= 0x10000
            self.max_ext_seq = max(self.max_ext_seq, candidate)
        self.received += 1
        transit = arrival_s * self.clock_rate - timestamp
        if self._last_transit is not None:
            d = abs(transit - self._last_transit)
            self.jitter += (d - self.jitter) / 16  # RFC 3550 §6.4.1
        self._last_transit = transit

    def absorb(self, later: ReceiveStats) -> None:
        """Count in what ``later`` received of the same source since (on a new leg, before
        its statistics joined these): its sequence numbers are extended past ours, so the
        packets lost between the two count as lost (RFC 3550 §A.3)."""
        if later.base_seq < 0:
            return
        if self.base_seq < 0:
            self.base_seq, self.max_ext_seq = later.base_seq, later.max_ext_seq
            self.received, self.jitter = later.received, later.jitter
            self._last_transit = later._last_transit
            return
        first = (self.max_ext_seq & ~0xFFFF) | (later.base_seq & 0xFFFF)
        if first < self.max_ext_seq - 0x8000:
            first += 0x10000
        elif first > self.max_ext_seq + 0x8000:
            first -= 0x10000
        self.max_ext_seq = max(self.max_ext_seq, later.max_ext_seq - later.base_seq + first)
        self.received += later.received
        self.jitter, self._last_transit = later.jitter, later._last_transit

    @property
    def expected(self) -> int:
        return 0 if self.base_seq < 0 else self.max_ext_seq - self.base_seq + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)

    @property
    def loss(self) -> float:
        return self.lost / self.expected if self.expected else 0.0

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000 / self.clock_rate
