"""The device's view of its call: silence judged from times, totals over every leg.

"`pinhole call --json` after a reassignment reports only the last leg's
packets and names the old node, and sends that undercount to /v1/metrics/calls";
and "a client that asks for reassignment itself when its leg goes silent ... (no
media and no answer to consent checks for ~1.5 s)".
"""

from __future__ import annotations

from client.api import CloudApi
from client.call import Call, LegRecord
from client.device import Device
from client.liveness import LegHealth, SilencePolicy
from client.media import MediaSession
from tests.joins import joined as joined_to
from wire.transports import RungName


def test_silence_is_judged_from_the_last_packet_heard() -> None:
    policy = SilencePolicy()  # check after 0.5 s of quiet, silent after 1.5 s
    assert policy.judge(heard_at=10.0, now=10.4) is LegHealth.ALIVE
    assert policy.judge(heard_at=10.0, now=10.5) is LegHealth.CHECK
    assert policy.judge(heard_at=10.0, now=11.49) is LegHealth.CHECK
    assert policy.judge(heard_at=10.0, now=11.5) is LegHealth.SILENT


def test_the_report_totals_every_leg_and_lists_each() -> None:
    first, second = joined_to("node-a"), joined_to("node-b")
    call = Call(Device(CloudApi("https://192.0.2.9", None)), first, start=100.0,
                clock=lambda: 110.0)
    for joined, sent, received, began, ended in ((first, 120, 100, 100.5, 103.0),
                                                 (second, 300, 290, 104.0, None)):
        session = MediaSession(joined)
        session.rung = RungName.UDP_5004
        session.counters.packets_sent, session.counters.packets_received = sent, received
        session.first_media_at, session.last_media_at = began + 0.1, (ended or 110.0) - 0.1
        call.legs.append(LegRecord(session, began, ended))
    report = call.report()
    assert (report.packets_sent, report.packets_received) == (420, 390)
    assert report.node == "node-b"
    assert [(leg.node, leg.packets_received) for leg in report.legs] == [("node-a", 100),
                                                                      ("node-b", 290)]
    assert [(leg.started_ms, leg.ended_ms) for leg in report.legs] == [(500.0, 3000.0),
                                                                      (4000.0, 10000.0)]
    metrics = report.metrics(10.0)  # what /v1/metrics/calls receives: the same totals
    assert (metrics.packets_sent, metrics.packets_received) == (420, 390)
    assert [leg.node for leg in metrics.legs] == ["node-a", "node-b"]
    assert report.as_dict()["reassigned"] == 1
