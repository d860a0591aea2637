"""Loss over a call whose media moved to another node: what was lost in the move counts.

Defect: after a failover each side got 465 or 466 of 500 packets, yet the console showed
loss 0.0 %. Each leg kept its own RFC 3550 statistics (and a new leg sent from sequence
number 0 again), so neither leg saw a gap: the packets lost between the two were counted
nowhere, in the in-call reports nor in the end-of-call one. RFC 3550 §5.1: the sequence
number increments by one for each packet of an SSRC, and the participant keeps its SSRC
across the move; §6.4.1 / §A.3: the cumulative number lost is expected minus received.
"""

from __future__ import annotations

from client.api import CloudApi
from client.call import Call, LegRecord
from client.device import Device
from client.media import MediaSession
from client.stats import ReceiveStats
from tests.joins import joined as _joined
from wire.models import Joined
from wire.rtp import build_rtp, parse_rtp_header
from wire.srtp import SrtpKeys, SrtpProfile, SrtpReceiver, SrtpSender
from wire.transports import RungName

OTHER_SSRC = 0x5EED


def _from_node(joined: Joined, sequences: range) -> list[bytes]:
    """The other participant's audio as this leg's node relays it (its keys to us)."""
    sender = SrtpSender(SrtpKeys.from_b64(SrtpProfile.AES_CM_128_HMAC_SHA1_80,
                                          joined.srtp.node_to_client.get_secret_value()))
    return [sender.protect(build_rtp(payload_type=0, sequence=seq & 0xFFFF,
                                     timestamp=160 * seq, ssrc=OTHER_SSRC, payload=bytes(160)))
            for seq in sequences]


def _hear(session: MediaSession, packets: list[bytes]) -> None:
    for packet in packets:
        session._on_packet(packet)  # what the leg's socket delivers


def test_packets_lost_during_a_move_count_in_the_call_and_in_call_loss() -> None:
    first, second = _joined("node-a"), _joined("node-b")
    call = Call(Device(CloudApi("https://192.0.2.9", None)), first, start=0.0,
                clock=lambda: 10.0)
    old = MediaSession(first)
    call.legs.append(LegRecord(old, 0.0))
    _hear(old, _from_node(first, range(0, 100)))
    # 100..149 were relayed to the dead node: lost. The new leg hears 150.. on; the first
    # few arrive before the call switched to it.
    old.rung = RungName.UDP_5004
    new = MediaSession(second)
    new.rung = RungName.UDP_5004
    _hear(new, _from_node(second, range(150, 155)))
    call._add(new)  # the move
    _hear(new, _from_node(second, range(155, 300)))
    report = call.report()
    assert (report.expected, report.lost) == (300, 50)
    assert report.loss == 50 / 300
    assert report.metrics(10.0).loss == 50 / 300  # what /v1/metrics/calls receives
    assert report.packets_received == 250
    # what an in-call report reads (the current leg's statistics): the same cumulative loss
    assert new.sources[OTHER_SSRC].loss == 50 / 300


def test_a_new_leg_continues_the_sequence_numbers() -> None:
    """RFC 3550 §5.1: the SSRC's sequence space goes on on the new leg; before, it restarted
    at 0 and receivers saw no gap (or took the packets for replays of old ones)."""
    first, second = _joined("node-a"), _joined("node-b")
    call = Call(Device(CloudApi("https://192.0.2.9", None)), first, start=0.0,
                clock=lambda: 10.0)
    old = MediaSession(first)
    sent_old: list[bytes] = []
    old._send = sent_old.append  # the leg's socket, captured
    call.legs.append(LegRecord(old, 0.0))
    for _ in range(120):
        old.send_audio(bytes(160))
    new = MediaSession(second)
    sent_new: list[bytes] = []
    new._send = sent_new.append
    call._add(new)
    assert new.next_sequence == 120
    new.send_audio(bytes(160))
    receiver = SrtpReceiver(SrtpKeys.from_b64(SrtpProfile.AES_CM_128_HMAC_SHA1_80,
                                              second.srtp.client_to_node.get_secret_value()))
    header = parse_rtp_header(receiver.unprotect(sent_new[0]))
    assert (header.sequence, header.timestamp) == (120, 120 * 160)


def test_statistics_joined_across_a_sequence_wrap() -> None:
    """RFC 3550 §A.1: the extended sequence number runs on past 65535 across the join."""
    earlier, later = ReceiveStats(), ReceiveStats()
    for seq in range(65500, 65530):
        earlier.update(seq, seq * 160, seq * 0.02)
    for seq in range(65540, 65600):  # 10 lost, then past the wrap
        later.update(seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, seq * 0.02)
    earlier.absorb(later)
    assert (earlier.expected, earlier.received, earlier.lost) == (100, 90, 10)
    empty = ReceiveStats()
    empty.absorb(later)  # a source first heard on the new leg
    assert (empty.expected, empty.lost) == (60, 0)
