"""Content legs on the node: relayed among a meeting's content legs only (fake clock).

docs/design.md "Content (screen sharing)": a content leg is latched, authenticated and
SRTP-checked like a media leg; the node relays it among the meeting's content legs,
never into the audio/video legs, and counts its bytes apart; it relays the floor
holder's content only, as the cloud says (``set_floor``).
"""

from __future__ import annotations

from media_node.engine import Engine
from tests.unit.test_engine import FakeSink, Party
from wire.models import AllocateLeg, LegEvent
from wire.rtp import build_rtcp_receiver_report, build_rtp, parse_rtp_header
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
    assert engine.set_floor("m1", "p-leg-ca")  # the cloud granted ca the floor
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


def test_only_the_floor_holder_is_relayed() -> None:
    """One presenter at a time (docs/design.md "Content"): the node drops and counts the
    content of a participant who does not hold the floor, ``not_presenter``."""
    engine = Engine("node-t")
    _media, (presenter, viewer), _udp, tcp = _meeting(engine)
    engine.on_packet(viewer.frame_packet(marker=True), tcp, ("192.0.2.1", 4003), 2.0)
    assert tcp.sent == []
    assert engine.drops["not_presenter"] == 1
    assert engine.stats()[viewer.leg_id].drops == {"not_presenter": 1}
    engine.on_packet(presenter.frame_packet(marker=True), tcp, ("192.0.2.1", 4002), 2.0)
    assert [to for _, to in tcp.sent] == [("192.0.2.1", 4003)]


def test_a_take_over_moves_what_the_node_relays() -> None:
    """The cloud hands the floor over (``floor.taken_over``): the first presenter's packets
    still in flight are dropped, the new presenter's relayed."""
    engine = Engine("node-t")
    _media, (first, second), _udp, tcp = _meeting(engine)
    assert engine.set_floor("m1", "p-leg-cb")
    engine.on_packet(first.frame_packet(marker=True), tcp, ("192.0.2.1", 4002), 2.0)
    assert tcp.sent == [] and engine.drops["not_presenter"] == 1
    engine.on_packet(second.frame_packet(marker=True), tcp, ("192.0.2.1", 4003), 2.0)
    [(out, to)] = tcp.sent
    assert to == ("192.0.2.1", 4002)
    assert parse_rtp_header(first.receiver.unprotect(out)).ssrc == 22


def test_a_free_floor_relays_nobody() -> None:
    engine = Engine("node-t")
    _media, (presenter, _viewer), _udp, tcp = _meeting(engine)
    assert engine.set_floor("m1", None)
    assert engine.presenter("m1") is None
    engine.on_packet(presenter.frame_packet(marker=True), tcp, ("192.0.2.1", 4002), 2.0)
    assert tcp.sent == [] and engine.drops["not_presenter"] == 1


def test_a_receivers_reports_still_reach_the_presenter() -> None:
    """RTCP (RFC 3550 §6.4.2: a receiver's reports) is not content: the floor does not
    stop it."""
    engine = Engine("node-t")
    _media, (presenter, viewer), _udp, tcp = _meeting(engine)
    report = viewer.sender.protect_rtcp(build_rtcp_receiver_report(ssrc=viewer.ssrc))
    engine.on_packet(report, tcp, ("192.0.2.1", 4003), 2.0)
    assert [to for _, to in tcp.sent] == [("192.0.2.1", 4002)]
    assert "not_presenter" not in engine.drops
    presenter.receiver.unprotect_rtcp(tcp.sent[0][0])  # authentic, for the presenter


def test_the_floor_is_kept_only_for_meetings_with_legs_here() -> None:
    """Bounded state: a floor for a meeting this node does not carry is not kept, and a
    meeting's floor goes with its last leg."""
    engine = Engine("node-t")
    assert not engine.set_floor("elsewhere", "p-x")
    assert engine.presenter("elsewhere") is None
    media, content, _udp, _tcp = _meeting(engine)
    assert engine.presenter("m1") == "p-leg-ca"
    for shared in content:
        engine.release(shared.leg_id)
    assert engine.presenter("m1") == "p-leg-ca"  # its audio and video legs are still here
    for party in media:
        engine.release(party.leg_id)
    assert engine.presenter("m1") is None


class CascadeParty(ContentParty):
    """The far end of a cascade leg this node was allocated (``cascade: true``): another
    node, sending the SSRCs of its own participants."""

    def __init__(self, name: str, ssrc: int, *, content: bool) -> None:
        super().__init__(name, ssrc)
        self.content = content

    def allocate(self, meeting: str = "m1") -> AllocateLeg:
        return Party.allocate(self, meeting).model_copy(
            update={"cascade": True, "content": self.content})


def _cascaded(engine: Engine) -> tuple[dict[str, Party], FakeSink, FakeSink]:
    """A meeting on two nodes, seen from one: a participant's audio leg and a media
    cascade on UDP; the presenter's and a viewer's content legs on TCP, and a content
    cascade (UDP, the cascade's first rung)."""
    udp, tcp = FakeSink(), FakeSink(RungName.TCP_5004)
    parties: dict[str, Party] = {
        "a": Party("a", 11), "ca": ContentParty("ca", 21),
        "m": CascadeParty("m", 0, content=False), "s": CascadeParty("s", 0, content=True),
        "cb": ContentParty("cb", 22)}
    for i, (name, party) in enumerate(parties.items()):
        assert engine.allocate(party.allocate(), 0.0).ok
        sink = tcp if name in ("ca", "cb") else udp
        engine.on_packet(party.binding(), sink, ("192.0.2.1", 4000 + i), 1.0)
    udp.sent.clear()
    tcp.sent.clear()
    return parties, udp, tcp


def test_content_crosses_its_own_cascade_not_the_media_one() -> None:
    """docs/design.md "Content": a content cascade carries the presenter's content to the
    meeting's other nodes; the audio/video cascade never carries content."""
    engine = Engine("node-t")
    parties, udp, tcp = _cascaded(engine)
    assert engine.set_floor("m1", "p-leg-ca")
    presenter = parties["ca"]
    assert isinstance(presenter, ContentParty)
    engine.on_packet(presenter.frame_packet(marker=True), tcp, ("192.0.2.1", 4001), 2.0)
    assert [to for _, to in udp.sent] == [("192.0.2.1", 4003)]  # the content cascade
    assert [to for _, to in tcp.sent] == [("192.0.2.1", 4004)]  # the local viewer
    out = udp.sent[0][0]
    assert parse_rtp_header(parties["s"].receiver.unprotect(out)).ssrc == 21


def test_content_from_a_cascade_reaches_the_local_content_legs_only() -> None:
    """A presenter on the other node: its node checked the floor; here the content
    cascade's packets go to every local content leg, never to an audio leg or back."""
    engine = Engine("node-t")
    parties, udp, tcp = _cascaded(engine)
    assert engine.set_floor("m1", "p-remote")  # the presenter is on the other node
    far = parties["s"]
    far.ssrc = 77  # the remote presenter's content SSRC
    assert isinstance(far, ContentParty)
    engine.on_packet(far.frame_packet(marker=True), udp, ("192.0.2.1", 4003), 2.0)
    assert udp.sent == []
    assert sorted(to for _, to in tcp.sent) == [("192.0.2.1", 4001), ("192.0.2.1", 4004)]
    assert "not_presenter" not in engine.drops
    local = parties["ca"]
    assert isinstance(local, ContentParty)  # not the presenter now: not relayed
    engine.on_packet(local.frame_packet(marker=True), tcp, ("192.0.2.1", 4001), 2.0)
    assert engine.drops["not_presenter"] == 1 and udp.sent == []


def test_audio_from_the_media_cascade_never_enters_a_content_leg() -> None:
    engine = Engine("node-t")
    parties, udp, tcp = _cascaded(engine)
    media = parties["m"]
    media.ssrc = 55
    engine.on_packet(media.rtp(b"\x00" * 160), udp, ("192.0.2.1", 4002), 2.0)
    assert tcp.sent == []
    assert [to for _, to in udp.sent] == [("192.0.2.1", 4000)]
