"""The default liveness settings fit the 3 s budget for media to come back.

"a hung node (SIGSTOP) is noticed only by the heartbeat timeout: 12.5-12.8 s
without media" with the old defaults (heartbeat 5 s × 3 misses; WebSocket ping every
10 s); "a hung node or a hung cloud is detected in ≤ 2 s".
"""

from __future__ import annotations

from client.liveness import SilencePolicy
from client.media import CONSENT_S
from cloud.settings import CloudSettings, parse


def test_a_hung_node_misses_its_heartbeats_within_two_seconds() -> None:
    d = CloudSettings()
    assert d.heartbeat_s * d.heartbeat_misses <= 2.0
    # the control WebSocket: a ping every 2 × heartbeat, the pong due one heartbeat later
    assert 2 * d.heartbeat_s + d.heartbeat_s <= 2.0
    assert parse([]).heartbeat_s == d.heartbeat_s  # the flag's default is the same


def test_the_device_gives_up_on_a_silent_leg_before_the_budget() -> None:
    policy = SilencePolicy()
    assert policy.silent_after_s <= 1.5 < 3.0
    assert policy.check_after_s < policy.silent_after_s


def test_consent_checks_hold_a_five_second_pinhole() -> None:
    """RFC 7675 §5.1 randomizes each interval between 0.8 and 1.2 times the period:
    the longest gap must stay under a 5 s outbound-refreshed UDP timeout."""
    assert CONSENT_S * 1.2 < 5.0
