"""netcheck's UDP idle finding from a listener's times ("netcheck reports when a
firewall's UDP idle timeout looks short"; seed: the pinhole "is usually closed after 30
seconds if no packets are sent from inside")."""

from __future__ import annotations

from client.udp_idle import LONGEST_CONSENT_GAP_S, finding
from wire.transports import RungName


def test_media_until_the_end_means_the_pinhole_outlived_the_window() -> None:
    found = finding(RungName.UDP_5004, last_outbound=100.0, last_media=119.8, window_end=120.0,
                    window_s=20.0)
    assert found.closed_after_s is None and not found.looks_short and found.advice() is None


def test_a_pinhole_shorter_than_the_consent_gap_looks_short() -> None:
    found = finding(RungName.UDP_5004, last_outbound=100.0, last_media=103.0, window_end=120.0,
                    window_s=20.0)
    assert found.closed_after_s == 3.0 < LONGEST_CONSENT_GAP_S
    assert found.looks_short
    advice = found.advice()
    assert advice is not None and "30 s" in advice


def test_a_pinhole_longer_than_the_consent_gap_is_held() -> None:
    found = finding(RungName.UDP_5004, last_outbound=100.0, last_media=110.0, window_end=120.0,
                    window_s=20.0)
    assert found.closed_after_s == 10.0 and not found.looks_short
    assert "keep" in (found.advice() or "")


def test_a_tcp_leg_says_nothing_about_udp() -> None:
    found = finding(RungName.TCP_5004, last_outbound=100.0, last_media=103.0, window_end=120.0,
                    window_s=20.0)
    assert found.advice() is None
