"""The engine's own relay path binds a leg's inbound SRTP to the SSRCs it was given.

docs/design.md "SRTP": a Pinhole leg sends the SSRC the cloud assigned; a WebRTC leg,
those of its offer (RFC 5576). Both data planes check this before decryption; so does
the engine's path (a meeting with a TCP/TLS or WebRTC leg, a cascade), here with fake
sinks and a fake clock: the libsrtp session never makes a stream for an SSRC its leg was
not given, and its SRTCP may come from a bounded few more (``RTCP_SSRCS``).

Defect pinned down: the SSRC was checked after ``srtp_unprotect``, and a session that
takes any SSRC keeps a stream for each one it authenticates, for ever: 20,000 SSRCs
grew decrypt time from 31 to 112 µs a packet. Before, these tests counted a stream per
foreign SSRC; now none (and ``RTCP_SSRCS`` at most for SRTCP).
"""

from __future__ import annotations

from media_node.engine import RTCP_SSRCS, Engine
from media_node.plane import python_plane
from tests.srtp_streams import kept_streams
from tests.unit.test_engine import A_ADDR, FakeSink, Party
from wire.rtp import build_rtcp_receiver_report, build_rtp

FOREIGN = 5000


def _pair() -> tuple[Engine, Party, Party, FakeSink]:
    engine = Engine("node-t", consent_s=30, leg_timeout_s=90, plane=python_plane())
    a, b, sink = Party("a", 1111), Party("b", 2222), FakeSink()
    for party, addr in ((a, A_ADDR), (b, ("198.51.100.7", 50000))):
        assert engine.allocate(party.allocate(), 0.0).ok
        engine.on_packet(party.binding(), sink, addr, 1.0)
    sink.sent.clear()
    return engine, a, b, sink


def _foreign_rtp(party: Party, ssrc: int) -> bytes:
    party.seq += 1
    return party.sender.protect(build_rtp(payload_type=0, sequence=party.seq, timestamp=0,
                                          ssrc=ssrc, payload=b"f" * 40))


def test_rtp_from_ssrcs_the_leg_was_not_given_leaves_no_stream() -> None:
    engine, a, _, sink = _pair()
    base = 0x20000000
    for ssrc in range(base, base + FOREIGN):  # each with a valid tag under a's keys
        engine.on_packet(_foreign_rtp(a, ssrc), sink, A_ADDR, 2.0)
    assert engine.drops == {"ssrc": FOREIGN} and not sink.sent
    assert kept_streams(engine.legs["leg-a"].inbound, range(base, base + FOREIGN)) == 0
    engine.on_packet(a.rtp(b"own"), sink, A_ADDR, 2.0)
    assert len(sink.sent) == 1  # its own SSRC still relays


def test_a_foreign_ssrc_is_dropped_before_its_tag_is_checked() -> None:
    """The header is authenticated, never encrypted (RFC 3711 §3.1): its SSRC is read
    first, so a forged packet under another SSRC is ``ssrc``, not ``auth``."""
    engine, a, _, sink = _pair()
    forged = bytearray(_foreign_rtp(a, 99))
    forged[-1] ^= 1
    engine.on_packet(bytes(forged), sink, A_ADDR, 2.0)
    assert engine.drops == {"ssrc": 1}


def test_srtcp_from_more_than_a_few_other_ssrcs_is_dropped_before_libsrtp() -> None:
    """RFC 3550 §6.4.2: an endpoint's receive-only sections may report from SSRCs it never
    sends from; the leg learns ``RTCP_SSRCS`` of them as they authenticate, and no more."""
    engine, a, _, sink = _pair()
    base = 0x30000000
    for ssrc in range(base, base + 200):
        engine.on_packet(a.sender.protect_rtcp(build_rtcp_receiver_report(ssrc=ssrc)), sink,
                         A_ADDR, 2.0)
    assert len(sink.sent) == RTCP_SSRCS
    assert engine.drops == {"ssrc": 200 - RTCP_SSRCS}
    assert kept_streams(engine.legs["leg-a"].inbound, range(base, base + 200)) == RTCP_SSRCS
    own = a.sender.protect_rtcp(build_rtcp_receiver_report(ssrc=a.ssrc))
    engine.on_packet(own, sink, A_ADDR, 2.0)
    assert len(sink.sent) == RTCP_SSRCS + 1  # the leg's own SSRC: always


def test_srtcp_that_fails_its_tag_teaches_the_leg_no_ssrc() -> None:
    """Only an authenticated SRTCP packet earns its SSRC a place: forged ones from many
    SSRCs cannot use up the few a leg learns."""
    engine, a, _, sink = _pair()
    for ssrc in range(1, 100):
        forged = bytearray(a.sender.protect_rtcp(build_rtcp_receiver_report(ssrc=ssrc)))
        forged[-1] ^= 1
        engine.on_packet(bytes(forged), sink, A_ADDR, 2.0)
    assert engine.drops == {"auth": 99}
    assert not engine.legs["leg-a"].rtcp_ssrcs
