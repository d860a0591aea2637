"""Content legs on the node: relayed among a meeting's content legs only (fake clock).

docs/design.md "Content (screen sharing)": a content leg is latched, authenticated and
SRTP-checked like a media leg; the node relays it among the meeting's content legs,
never into the audio/video legs, and counts its bytes apart.
"""

from __future__ import annotations

from media_node.engine import Engine
from tests.unit.test_engine import FakeSink, Party
from wire.models import AllocateLeg, LegEvent
from wire.rtp import build_rtp, parse_rtp_header
from wire.transports import RungName


class ContentParty(Party):
    def allocate(self, meeting: str = "m1") -> AllocateLeg:
        return super().allocate(meeting).model_copy(update={"content": True})

    def frame_packet(self, marker: bool) -> bytes:
        self.seq += 1
        return self.sender.protect(build_rtp(payload_type=96, sequence=self.seq, timestamp=0,
                                             ssrc=self.ssrc, payload=bytes(1100),
                                             marker=marker))


def _meeting(engine: Engine) -> tuple[list[Party], list[ContentParty], FakeSink, FakeSink]:
    udp, tcp = FakeSink(), FakeSink(RungName.TCP_5004)
    media = [Party("a", 11), Party("b", 12)]
    content = [ContentParty("ca", 21), ContentParty("cb", 22)]
    for i, party in enumerate([*media, *content]):
        assert engine.allocate(party.allocate(), 0.0).ok
        sink = udp if party in media else tcp
        engine.on_packet(party.binding(), sink, ("192.0.2.1", 4000 + i), 1.0)
    udp.sent.clear()
    tcp.sent.clear()
    return media, content, udp, tcp


def test_content_reaches_the_other_content_legs_only() -> None:
    engine = Engine("node-t")
    _media, (presenter, viewer), udp, tcp = _meeting(engine)
    engine.on_packet(presenter.frame_packet(marker=True), tcp, ("192.0.2.1", 4002), 2.0)
    assert udp.sent == []  # nothing into the audio/video legs
    [(out, to)] = tcp.sent
    assert to == ("192.0.2.1", 4003)  # the viewer's content leg, not the presenter's
    header = parse_rtp_header(viewer.receiver.unprotect(out))
    assert (header.ssrc, header.marker, header.payload_type) == (21, True, 96)


def test_audio_never_reaches_a_content_leg() -> None:
    engine = Engine("node-t")
    (a, _b), _content, udp, tcp = _meeting(engine)
    engine.on_packet(a.rtp(b"\x00" * 160), udp, ("192.0.2.1", 4000), 2.0)
    assert tcp.sent == []
    assert [to for _, to in udp.sent] == [("192.0.2.1", 4001)]


def test_a_content_leg_sends_its_own_ssrc_only() -> None:
    """The SSRC check of every leg (docs/design.md "SRTP"): a content leg may not send as
    the participant's media SSRC, nor as another content leg."""
    engine = Engine("node-t")
    _media, (presenter, _viewer), _udp, tcp = _meeting(engine)
    presenter.ssrc = 11  # the media leg's SSRC
    engine.on_packet(presenter.frame_packet(marker=False), tcp, ("192.0.2.1", 4002), 2.0)
    assert tcp.sent == [] and engine.drops["ssrc"] == 1


def test_content_bytes_are_counted_apart_and_kept_after_release() -> None:
    engine = Engine("node-t")
    (a, _b), (presenter, _viewer), udp, tcp = _meeting(engine)
    packet = presenter.frame_packet(marker=True)
    engine.on_packet(packet, tcp, ("192.0.2.1", 4002), 2.0)
    engine.on_packet(a.rtp(b"\x00" * 160), udp, ("192.0.2.1", 4000), 2.0)
    assert engine.content_total("bytes_in") == len(packet)
    assert engine.content_total("bytes_out") == len(tcp.sent[0][0])
    assert engine.bytes_in > engine.content_total("bytes_in")  # audio counted too, not here
    engine.release(presenter.leg_id)
    assert engine.content_total("bytes_in") == len(packet)


def test_the_last_content_leg_released_forgets_the_group_not_the_meeting() -> None:
    engine = Engine("node-t")
    media, content, udp, _tcp = _meeting(engine)
    for party in content:
        engine.release(party.leg_id)
    engine.on_packet(media[0].rtp(b"\x00" * 160), udp, ("192.0.2.1", 4000), 3.0)
    assert len(udp.sent) == 1  # the meeting's audio still flows


def test_a_content_leg_latches_on_tcp_33434() -> None:
    """Defect pinned down: before, an authenticated check on the node's TCP 33434 listener
    (content's second rung) raised KeyError in the engine (no ICE-lite priority for the
    rung); now it latches, and the node reports the rung."""
    events: list[LegEvent] = []
    engine = Engine("node-t", emit=events.append)
    party, sink = ContentParty("c", 31), FakeSink(RungName.TCP_33434)
    assert engine.allocate(party.allocate(), 0.0).ok
    engine.on_packet(party.binding(), sink, ("192.0.2.1", 5000), 1.0)
    assert [(e.event, e.rung) for e in events] == [("latched", RungName.TCP_33434)]
    assert len(sink.sent) == 1  # the authenticated answer
