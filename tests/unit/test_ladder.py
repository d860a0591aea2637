"""The racing ladder's schedule: a stale report costs one stagger, not one per dead rung.

A device whose cached report says UDP (probed before the firewall changed)
gets a plan that starts with dead UDP rungs. RFC 8305 §5 races attempts a
Connection Attempt Delay apart; Pinhole starts the UDP rungs a quarter of the
stagger apart and the stream rungs (TCP, TLS, the proxy) one stagger after the
first, an eighth of the stagger apart in plan order, so TCP, TLS or proxy media
starts within 1 RTT + 300 ms of the join even behind two dead UDP rungs (it
started after 0.5 s, or 0.75 s for TLS; a quarter of the stagger apart, the
proxy's media came 351-355 ms after the join against a target of 310-324 ms),
and TCP, a round trip shorter than TLS, wins whenever both work (started
together, TLS won now and then on a busy machine).
"""

from __future__ import annotations

import pytest

from client.device import _waves
from wire.models import Endpoint


def _plan(*rungs: str) -> list[Endpoint]:
    return [Endpoint.model_validate({"rung": r, "transport": r.split("/")[0],
                                     "port": int(r.split("/")[1]) if "/" in r else 443})
            for r in rungs]


def _starts(plan: list[Endpoint], stagger: float) -> dict[str, float]:
    at, starts = 0.0, dict[str, float]()
    for wave in _waves(plan, stagger):
        for endpoint in wave:
            starts[endpoint.rung] = at
        at += wave.delay_s
    return starts


def test_every_stream_rung_starts_one_stagger_after_the_first_rung() -> None:
    plan = _plan("udp/5004", "udp/33434", "tcp/5004", "tls/443", "http-proxy")
    assert _starts(plan, 0.2) == pytest.approx({
        "udp/5004": 0.0, "udp/33434": 0.05, "tcp/5004": 0.2, "tls/443": 0.22,
        "http-proxy": 0.24})


def test_stream_rungs_start_in_plan_order() -> None:
    """The seeds' ladder: TCP before TLS. Started together, the first to authenticate won,
    and on a busy machine that was TLS now and then (a test and lab 03 saw tls/443 where
    TCP worked)."""
    waves = _waves(_plan("udp/5004", "tcp/5004", "tls/443"), 0.2)
    assert [[e.rung for e in w] for w in waves] == [["udp/5004"], ["tcp/5004"], ["tls/443"]]
    assert [w.delay_s for w in waves] == pytest.approx([0.2, 0.02, 0.2])


def test_plans_without_udp_or_without_streams() -> None:
    assert [[e.rung for e in w] for w in _waves(_plan("tcp/5004", "tls/443"), 0.2)] == [
        ["tcp/5004"], ["tls/443"]]
    assert _starts(_plan("udp/5004", "udp/9000", "udp/33434"), 0.2) == pytest.approx(
        {"udp/5004": 0.0, "udp/9000": 0.05, "udp/33434": 0.1})


def test_reached_stream_rungs_first_start_at_once() -> None:
    """A fresh report from behind a UDP-blocking firewall puts TCP/TLS first in the plan
    (cloud.assignment.transport_plan: rungs the device reached first): they start first,
    not after the UDP rungs that follow them (the regression this pins: TLS media at
    220 ms instead of one RTT on the tls-only lab profile)."""
    plan = _plan("tcp/5004", "tls/443", "udp/5004", "udp/33434", "http-proxy")
    assert _starts(plan, 0.2) == pytest.approx({
        "tcp/5004": 0.0, "tls/443": 0.02, "udp/5004": 0.22, "udp/33434": 0.27,
        "http-proxy": 0.42})


def test_content_tries_tcp_33434_only_when_tcp_5004_did_not_answer_in_a_stagger() -> None:
    """The content ladder (FNR: "The Cisco Spark app uses port 33434 only when 5004 is
    blocked"): TCP 33434 starts a whole stagger after TCP 5004 (earlier when 5004 fails
    at once, like every wave), then TLS and the proxy a short step apart."""
    plan = _plan("tcp/5004", "tcp/33434", "tls/443", "http-proxy")
    assert _starts(plan, 0.2) == pytest.approx({
        "tcp/5004": 0.0, "tcp/33434": 0.2, "tls/443": 0.22, "http-proxy": 0.24})
