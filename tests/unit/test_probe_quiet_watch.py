"""When discovery may report early (``client.probe.QuietWatch``), on a fake clock.

Defect: the rule lived inside ``probe_until_quiet``'s coroutine and read the
event loop's clock, so it could only be tested with real sockets and real time
(tests/integration/test_probe_quiet.py). Now the watch is given each outcome
and ``now`` and says when the rungs still waiting have gone quiet.
"""

from __future__ import annotations

from client.probe import (
    NOT_YET,
    QUIET_MARGIN_S,
    SILENT_SHARE,
    ProbeOutcome,
    ProbeTarget,
    QuietWatch,
)
from wire.address import Address
from wire.transports import RUNGS_BY_NAME, RungName


def _target(node: str, rung: RungName) -> ProbeTarget:
    return ProbeTarget(node, rung, RUNGS_BY_NAME[rung].transport, Address("192.0.2.1", 5004))


NEAR_UDP, NEAR_TLS = _target("near", RungName.UDP_5004), _target("near", RungName.TLS_443)
FAR_UDP = _target("far", RungName.UDP_5004)


def test_nothing_answered_yet_waits_for_the_whole_probe() -> None:
    watch = QuietWatch([NEAR_UDP, NEAR_TLS], started=100.0, timeout_ms=1000)
    assert watch.report_at() is None


def test_a_node_is_quiet_after_twice_its_last_answer_plus_the_margin() -> None:
    watch = QuietWatch([NEAR_UDP, NEAR_TLS], started=100.0, timeout_ms=1000)
    watch.seen(ProbeOutcome(NEAR_UDP, 10.0, None, None), now=100.010)
    at = watch.report_at()
    assert at is not None and abs(at - (100.0 + 2 * 0.010 + QUIET_MARGIN_S)) < 1e-9
    assert [o.error for o in watch.early()] == [None, NOT_YET]


def test_a_node_never_heard_holds_the_report_for_its_share_of_the_timeout() -> None:
    watch = QuietWatch([NEAR_UDP, FAR_UDP], started=0.0, timeout_ms=1000)
    watch.seen(ProbeOutcome(NEAR_UDP, 10.0, None, None), now=0.010)
    assert watch.report_at() == SILENT_SHARE * 1.0


def test_a_probe_through_the_proxy_still_waiting_holds_the_report() -> None:
    proxy = _target("near", RungName.HTTP_PROXY)
    watch = QuietWatch([NEAR_UDP, proxy], started=0.0, timeout_ms=1000)
    watch.seen(ProbeOutcome(NEAR_UDP, 10.0, None, None), now=0.010)
    assert watch.report_at() is None


def test_everything_in_is_not_an_early_report() -> None:
    watch = QuietWatch([NEAR_UDP], started=0.0, timeout_ms=1000)
    watch.seen(ProbeOutcome(NEAR_UDP, 10.0, None, None), now=0.010)
    assert watch.report_at() is None


def test_a_node_is_timed_by_each_rungs_first_answer_not_its_later_samples() -> None:
    """The defect it pins down: with a UDP rung sampled three times (``UDP_SAMPLES``), its
    outcome came at 3 RTT and the watch took that for the node's latest wave, so node-far's
    UDP rungs (90 ms) were still waiting when its quicker TCP rungs set the quiet time and
    lab 01 reported "probed 13/15, 2 still waiting". The first answer is the wave; the
    samples after it refine the RTT and move no quiet time."""
    watch = QuietWatch([NEAR_UDP, NEAR_TLS], started=0.0, timeout_ms=1000)
    watch.seen(ProbeOutcome(NEAR_UDP, 10.0, None, None), now=0.010, sampling=True)  # first
    watch.seen(ProbeOutcome(NEAR_UDP, 9.0, None, None), now=0.030)  # its samples' end
    at = watch.report_at()
    assert at is not None and abs(at - (2 * 0.010 + QUIET_MARGIN_S)) < 1e-9
    assert watch.early()[0].rtt_ms == 9.0  # the lowest sample stands


def test_an_early_report_waits_for_an_answered_rungs_samples() -> None:
    """The defect it pins down (lab 02 with a busy loop on every core): the early report
    carried a UDP rung's first sample, 164 ms for node-far (90 ms away) where its later
    samples were quicker, so node-near over TLS (15 + 120 ms) outscored it and the lab's
    whitelist step joined node-near. While an answered rung samples, no early report; when
    its samples end, the report is due at once (its quiet time has passed) and carries the
    lowest sample."""
    watch = QuietWatch([FAR_UDP, NEAR_TLS, NEAR_UDP], started=0.0, timeout_ms=1000)
    watch.seen(ProbeOutcome(NEAR_TLS, 15.0, None, None), now=0.015)
    watch.seen(ProbeOutcome(FAR_UDP, 164.0, None, None), now=0.164, sampling=True)
    assert watch.report_at() is None  # node-far's samples go on
    watch.seen(ProbeOutcome(FAR_UDP, 91.0, None, None), now=0.420)  # samples 2, 3 ended
    at = watch.report_at()
    assert at is not None and at <= 0.420  # node-near's UDP went quiet long ago: due now
    assert [o.rtt_ms for o in watch.early()] == [91.0, 15.0, None]
