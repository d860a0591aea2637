"""A WebRTC endpoint's leg on the node, without sockets (fake clock, fake sinks).

The endpoint side is ``wire.dtls`` in the client role (RFC 5764: the node is
the DTLS server, RFC 8842 §5.1); its leg is allocated as the cloud does from an
SDP offer (``AllocateLeg.webrtc``). What is proven here:

- no media before the DTLS handshake, then keys from it (RFC 5764 §4.2);
- a certificate that is not the offer's fingerprint gets no keys (RFC 8827 §6.5);
- the endpoint's payload types map onto the meeting's and back (RFC 3264 §6.1),
  its SSRCs are the offer's only (RFC 5576), and the others' streams reach it in
  the slots its answer signalled (RFC 7667 §3.2.2);
- a PLI about a slot reaches the sender of the slot's source, renamed (RFC 4585 §6.3.1).
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from pydantic import SecretStr

from media_node.engine import Engine
from media_node.webrtc import SLOT_IDLE_S, WebRtcLeg
from tests.unit.test_engine import A_ADDR, B_ADDR, FakeSink, Party
from wire.dtls import DtlsCertificate, DtlsRole, DtlsSrtp, DtlsState, Fingerprint
from wire.models import (
    AllocateLeg,
    IceCredentials,
    PayloadTypeMap,
    SendSlot,
    WebRtcLegParams,
)
from wire.rtp import RTCP_PSFB, build_rtp, parse_rtp_header
from wire.srtp import SrtpReceiver, SrtpSender
from wire.stun import build_leg_binding

NOW = datetime.datetime(2026, 12, 7, tzinfo=datetime.UTC)
BROWSER_AUDIO, BROWSER_VIDEO = 0xB0B0A001, 0xB0B0F001
SLOT_AUDIO, SLOT_VIDEO = 0x51070001, 0x51070002
#: the browser's numbers (Chrome's): opus 111, PCMU 0, VP8 96; the meeting's VP8 is 120
BROWSER_PTS = ((111, 111), (0, 0), (96, 120))


class Browser:
    """The endpoint: its ICE credentials, its DTLS client, its SRTP once keyed."""

    def __init__(self, node_certificate: DtlsCertificate, *, fingerprint: str | None = None
                 ) -> None:
        self.certificate = DtlsCertificate.generate(NOW)
        self.dtls = DtlsSrtp(self.certificate, DtlsRole.CLIENT, node_certificate.fingerprint)
        self.ice = IceCredentials(node_ufrag="nodeWEB1", client_ufrag="brwsUFRG",
                                  pwd=SecretStr("browserPassword0123456789"))
        self.fingerprint = fingerprint or str(self.certificate.fingerprint)
        self.sender: SrtpSender | None = None
        self.receiver: SrtpReceiver | None = None
        self.seq = 0

    def allocate(self, meeting: str = "m1") -> AllocateLeg:
        return AllocateLeg(
            request_id="r-web", leg_id="leg-web", meeting_id=meeting, participant_id="p-web",
            ssrc=BROWSER_AUDIO, ice=self.ice,
            webrtc=WebRtcLegParams(
                fingerprint=self.fingerprint, ssrcs=[BROWSER_AUDIO, BROWSER_VIDEO],
                payload_types=[PayloadTypeMap(leg=a, meeting=b) for a, b in BROWSER_PTS],
                slots=[SendSlot(ssrc=SLOT_AUDIO, kind="audio"),
                       SendSlot(ssrc=SLOT_VIDEO, kind="video")]))

    def binding(self) -> bytes:
        return build_leg_binding(self.ice.node_ufrag, self.ice.client_ufrag,
                                 self.ice.pwd.get_secret_value().encode(),
                                 priority=1 << 24, use_candidate=True, controlling=7)

    def handshake(self, engine: Engine, sink: FakeSink, now: float) -> None:
        """DTLS through the engine until neither side has anything more to say."""
        flight = self.dtls.start(now)
        for _ in range(10):
            sink.sent.clear()
            for datagram in flight:
                engine.on_packet(datagram, sink, B_ADDR, now)
            answers = [d for d, addr in sink.sent if addr == B_ADDR]
            flight = [out for d in answers for out in self.dtls.receive(d, now)]
            if not flight:
                break
        if self.dtls.state is DtlsState.CONNECTED:
            assert self.dtls.keys is not None
            self.sender = SrtpSender(self.dtls.keys.local)
            self.receiver = SrtpReceiver(self.dtls.keys.remote)

    def rtp(self, payload_type: int, ssrc: int, payload: bytes = bytes(40)) -> bytes:
        assert self.sender is not None
        self.seq += 1
        return self.sender.protect(build_rtp(payload_type=payload_type, sequence=self.seq,
                                             timestamp=self.seq * 960, ssrc=ssrc,
                                             payload=payload))


@pytest.fixture
def node_certificate() -> DtlsCertificate:
    return DtlsCertificate.generate(NOW)


@pytest.fixture
def engine(node_certificate: DtlsCertificate) -> Engine:
    return Engine("node-t", consent_s=30, leg_timeout_s=90, certificate=node_certificate)


def _meeting(engine: Engine, browser: Browser) -> tuple[Party, FakeSink]:
    """A Pinhole participant and the browser, both latched on one UDP sink."""
    party, sink = Party("a", 1111), FakeSink()
    assert engine.allocate(party.allocate(), 0.0).ok
    assert engine.allocate(browser.allocate(), 0.0).ok
    engine.on_packet(party.binding(), sink, A_ADDR, 1.0)
    engine.on_packet(browser.binding(), sink, B_ADDR, 1.0)
    sink.sent.clear()
    return party, sink


def _to(sink: FakeSink, addr: Any) -> list[bytes]:
    return [d for d, a in sink.sent if a == addr]


def test_no_media_before_dtls_then_keys_from_the_handshake(
        engine: Engine, node_certificate: DtlsCertificate) -> None:
    """RFC 5764 §4.2: the leg's SRTP keys are the DTLS exporter's; before the handshake
    nothing is relayed to or from it."""
    browser = Browser(node_certificate)
    party, sink = _meeting(engine, browser)
    engine.on_packet(party.rtp(bytes(160)), sink, A_ADDR, 2.0)
    assert _to(sink, B_ADDR) == [] and engine.drops["dtls_pending"] == 1

    browser.handshake(engine, sink, 2.0)
    assert browser.dtls.state is DtlsState.CONNECTED
    leg = engine.legs["leg-web"]
    assert leg.webrtc is not None and leg.webrtc.keyed
    assert engine.plane.routes == 0  # translated per receiver: the Python path

    sink.sent.clear()
    engine.on_packet(party.rtp(bytes(160)), sink, A_ADDR, 3.0)
    [out] = _to(sink, B_ADDR)
    assert browser.receiver is not None
    header = parse_rtp_header(browser.receiver.unprotect(out))
    assert (header.payload_type, header.ssrc) == (0, SLOT_AUDIO)  # PCMU, in the audio slot


def test_a_certificate_that_is_not_the_offers_gets_no_keys(
        engine: Engine, node_certificate: DtlsCertificate) -> None:
    """RFC 8827 §6.5: the peer's certificate must match the fingerprint of its SDP."""
    other = DtlsCertificate.generate(NOW)
    browser = Browser(node_certificate, fingerprint=str(other.fingerprint))
    party, sink = _meeting(engine, browser)
    browser.handshake(engine, sink, 2.0)
    leg = engine.legs["leg-web"]
    assert leg.webrtc is not None and not leg.webrtc.keyed and leg.webrtc.failed
    assert engine.drops["dtls_fingerprint"] == 1
    sink.sent.clear()
    engine.on_packet(party.rtp(bytes(160)), sink, A_ADDR, 3.0)
    assert _to(sink, B_ADDR) == []


def test_payload_types_and_ssrcs_of_the_offer(engine: Engine,
                                              node_certificate: DtlsCertificate) -> None:
    """RFC 3264 §6.1: the browser's VP8 (its 96) reaches a Pinhole client as the meeting's
    120; an SSRC its offer did not signal (RFC 5576) and a payload type it did not
    negotiate are dropped."""
    browser = Browser(node_certificate)
    party, sink = _meeting(engine, browser)
    browser.handshake(engine, sink, 2.0)
    sink.sent.clear()
    engine.on_packet(browser.rtp(96, BROWSER_VIDEO), sink, B_ADDR, 3.0)
    [out] = _to(sink, A_ADDR)
    header = parse_rtp_header(party.receiver.unprotect(out))
    assert (header.payload_type, header.ssrc) == (120, BROWSER_VIDEO)

    engine.on_packet(browser.rtp(111, 0xDEADBEEF), sink, B_ADDR, 3.0)
    engine.on_packet(browser.rtp(100, BROWSER_AUDIO), sink, B_ADDR, 3.0)
    assert len(_to(sink, A_ADDR)) == 1
    assert engine.drops["ssrc"] == 1 and engine.drops["codec"] == 1


def test_a_pli_about_a_slot_reaches_the_sources_sender(
        engine: Engine, node_certificate: DtlsCertificate) -> None:
    """RFC 4585 §6.3.1: the browser's PLI names its slot's SSRC; the node renames it to
    the source's and sends it to that source's leg only. Its RR ends at the node."""
    browser = Browser(node_certificate)
    party, sink = _meeting(engine, browser)
    browser.handshake(engine, sink, 2.0)
    engine.on_packet(party.rtp(bytes(160)), sink, A_ADDR, 3.0)  # party's audio → slot
    sink.sent.clear()
    pli = bytes([0x81, RTCP_PSFB, 0, 2]) + BROWSER_VIDEO.to_bytes(4, "big") \
        + SLOT_AUDIO.to_bytes(4, "big")
    rr = bytes([0x80, 201, 0, 1]) + BROWSER_AUDIO.to_bytes(4, "big")
    assert browser.sender is not None
    engine.on_packet(browser.sender.protect_rtcp(rr + pli), sink, B_ADDR, 3.1)
    [out] = _to(sink, A_ADDR)
    clear = SrtpReceiver(party.down).unprotect_rtcp(out)
    assert clear == pli[:8] + (1111).to_bytes(4, "big")


def test_slots_free_up_when_a_source_leaves_or_idles() -> None:
    """RFC 7667 §3.2.2: a slot carries one source at a time; a second source waits until
    the first has been idle SLOT_IDLE_S, or has left."""
    certificate = DtlsCertificate.generate(NOW)
    leg = WebRtcLeg(DtlsSrtp(certificate, DtlsRole.SERVER, certificate.fingerprint),
                    Browser(certificate).allocate().webrtc)  # type: ignore[arg-type]
    first = build_rtp(payload_type=0, sequence=1, timestamp=0, ssrc=1, payload=b"x")
    second = build_rtp(payload_type=0, sequence=1, timestamp=0, ssrc=2, payload=b"x")
    synthetic = build_rtp(payload_type=96, sequence=1, timestamp=0, ssrc=1, payload=b"x")
    out, _ = leg.for_endpoint(first, 0.0)
    assert out is not None and parse_rtp_header(out).ssrc == SLOT_AUDIO
    assert leg.for_endpoint(second, 1.0) == (None, "no_slot")
    assert leg.for_endpoint(synthetic, 1.0) == (None, "codec")  # never negotiated
    assert leg.for_endpoint(second, SLOT_IDLE_S) != (None, "no_slot")
    assert leg.source_of(SLOT_AUDIO) == (2).to_bytes(4, "big")
    leg.forget_source((2).to_bytes(4, "big"))
    assert leg.source_of(SLOT_AUDIO) is None
    assert leg.for_endpoint(first, SLOT_IDLE_S + 0.5)[0] is not None


def test_a_webrtc_leg_needs_the_nodes_certificate() -> None:
    """A node without a DTLS certificate refuses a WebRTC leg instead of failing later."""
    engine = Engine("node-t")
    answer = engine.allocate(Browser(DtlsCertificate.generate(NOW)).allocate(), 0.0)
    assert not answer.ok and answer.detail == "this node has no DTLS certificate"


def test_fingerprint_text_is_checked_at_allocation(node_certificate: DtlsCertificate) -> None:
    engine = Engine("node-t", certificate=node_certificate)
    command = Browser(node_certificate, fingerprint="sha-256 not:hex:at:all").allocate()
    answer = engine.allocate(command, 0.0)
    assert not answer.ok and answer.detail.startswith("bad DTLS fingerprint: ")
    assert Fingerprint.parse(str(node_certificate.fingerprint)) == node_certificate.fingerprint


def test_dtls_only_on_a_webrtc_legs_selected_pair(
        engine: Engine, node_certificate: DtlsCertificate) -> None:
    """RFC 7983 §7: a first byte of 20-63 is DTLS; the node takes it only on a WebRTC leg's
    latched path, its selected pair (RFC 8445 §12.1). From nowhere: ``unlatched``; on a Pinhole leg,
    which has no DTLS: ``dtls_unexpected``. Nothing is answered."""
    browser = Browser(node_certificate)
    _, sink = _meeting(engine, browser)
    [hello] = browser.dtls.start(2.0)
    engine.on_packet(hello, sink, ("203.0.113.9", 4000), 2.0)
    engine.on_packet(hello, sink, A_ADDR, 2.0)
    assert sink.sent == []
    assert engine.drops["unlatched"] == 1 and engine.drops["dtls_unexpected"] == 1


def _leg(payload_types: tuple[tuple[int, int], ...] = BROWSER_PTS) -> WebRtcLeg:
    certificate = DtlsCertificate.generate(NOW)
    params = Browser(certificate).allocate().webrtc
    assert params is not None
    params = params.model_copy(update={"payload_types": [
        PayloadTypeMap(leg=a, meeting=b) for a, b in payload_types]})
    return WebRtcLeg(DtlsSrtp(certificate, DtlsRole.SERVER, certificate.fingerprint), params)


def test_payload_type_mapping_keeps_the_marker_and_the_rest() -> None:
    """RFC 3550 §5.1: the marker bit and everything but the 7-bit PT stay; a payload type
    that is the meeting's already passes as it is; a bare 12-byte header is a packet."""
    leg = _leg(((97, 120), (111, 111)))
    marked = build_rtp(payload_type=97, sequence=5, timestamp=9, ssrc=BROWSER_VIDEO,
                       payload=b"", marker=True)
    assert len(marked) == 12
    out = leg.to_meeting(marked)
    assert out is not None
    header = parse_rtp_header(out)
    assert (header.payload_type, header.marker, header.sequence) == (120, True, 5)
    opus = build_rtp(payload_type=111, sequence=1, timestamp=0, ssrc=BROWSER_AUDIO,
                     payload=b"\x01")
    assert leg.to_meeting(opus) == opus
    assert leg.to_meeting(marked[:11]) is None


def test_a_source_that_lost_its_slot_does_not_come_back_into_it() -> None:
    """RFC 7667's translator gives a stream one source at a time: once B took the idle
    slot from A, A's packets no longer go out under it while B sends."""
    leg = _leg()
    a = build_rtp(payload_type=0, sequence=1, timestamp=0, ssrc=1, payload=b"x")
    b = build_rtp(payload_type=0, sequence=1, timestamp=0, ssrc=2, payload=b"x")
    assert leg.for_endpoint(a, 0.0)[0] is not None
    assert leg.for_endpoint(b, SLOT_IDLE_S)[0] is not None  # A idle: B takes the slot
    assert leg.for_endpoint(a, SLOT_IDLE_S + 0.1) == (None, "no_slot")
    assert leg.source_of(SLOT_AUDIO) == (2).to_bytes(4, "big")


def test_an_offer_with_another_participants_ssrc_gets_no_leg(
        node_certificate: DtlsCertificate) -> None:
    """RFC 3550 §8.2: an SSRC names one source in a session. An endpoint whose offer claims a
    participant's SSRC would have its packets pass for that participant's: refused."""
    engine = Engine("node-t", certificate=node_certificate)
    party = Party("a", BROWSER_AUDIO)  # a Pinhole participant already sends this SSRC
    assert engine.allocate(party.allocate(), 0.0).ok
    answer = engine.allocate(Browser(node_certificate).allocate(), 0.0)
    assert not answer.ok and answer.detail == "an SSRC of the offer is another participant's"
    assert "leg-web" not in engine.legs
