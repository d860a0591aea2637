"""A cascade races its ladder with the client's stagger (the requirement: "Where UDP from the node
is blocked, the cascade reached TLS 443 only after ≈ 5 s (UDP 2 s, then TCP 5004 3 s, one
after the other), while the client races its ladder. The cascade too should have media
within 1 RTT + 300 ms of the first working rung."): the schedule as a pure function,
checked against the client's own waves for the same ladders."""

from __future__ import annotations

import pytest

from client.device import _waves
from hybrid_node.dial import HYBRID_LADDER
from media_node.cascade import CLOUD_LADDER, STAGGER_S, stagger_delays
from wire.models import Endpoint
from wire.transports import LADDER, TCP_5004, TLS_443, UDP_5004, Rung


def as_plan(ladder: tuple[Rung, ...]) -> list[Endpoint]:
    return [Endpoint(rung=r.name, transport=r.transport, port=r.default_port) for r in ladder]


@pytest.mark.parametrize(("ladder", "delays"), [
    (HYBRID_LADDER, [0.2, 0.02, 0.2]),  # TCP 200 ms after UDP, TLS 20 ms after TCP
    (CLOUD_LADDER, [0.2, 0.2]),  # TLS 200 ms after UDP
    ((TCP_5004, TLS_443), [0.02, 0.2]),
    ((UDP_5004,), [0.2]),
    ((), []),
])
def test_the_schedule(ladder: tuple[Rung, ...], delays: list[float]) -> None:
    assert stagger_delays(ladder) == pytest.approx(delays)


@pytest.mark.parametrize("ladder", [HYBRID_LADDER, CLOUD_LADDER, tuple(LADDER)],
                         ids=["hybrid", "cloud", "client"])
def test_the_same_stagger_as_the_clients_race(ladder: tuple[Rung, ...]) -> None:
    """One race, two callers: the client's waves (one rung each) wait what the cascade
    waits, so the cascade's media comes as soon after the first working rung."""
    assert stagger_delays(ladder) == pytest.approx(
        [w.delay_s for w in _waves(as_plan(ladder), STAGGER_S)])


def test_the_last_working_rung_of_the_hybrid_ladder_starts_within_300_ms() -> None:
    """TLS 443, the last rung, starts 220 ms after the dial whatever the rungs before it
    do: within the 300 ms the requirement allows, before its own round trips."""
    assert sum(stagger_delays(HYBRID_LADDER)[:-1]) == pytest.approx(0.22)
