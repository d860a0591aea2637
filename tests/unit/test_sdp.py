"""SDP offer/answer of a WebRTC leg (``wire.sdp``), on offers of stacks nobody here wrote.

The vectors are real offers: ``tests/vectors/chromium_offer.sdp`` (Chromium 156's
headless shell) and ``tests/vectors/aiortc_offer.sdp`` (aiortc 1.16); how each was
made is in the ``.md`` file beside it. Answers are read back with
``sdp_transform`` and checked rule by rule. That aiortc accepts the answer is proved
in ``tests/integration/test_sdp_aiortc.py`` (aiortc's offer needs sockets).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import sdp_transform  # type: ignore[import-untyped]
from hypothesis import given
from hypothesis import strategies as st

from wire.errors import SdpError
from wire.sdp import (
    MAX_CODECS,
    MAX_LINES,
    MAX_MEDIA,
    MAX_SDP_BYTES,
    MAX_SSRCS,
    Answer,
    Candidate,
    Codec,
    Offer,
    SendStream,
    build_answer,
    parse_offer,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def _vector(name: str) -> str:
    """A saved offer with its CRLF line ends (RFC 8866 §5), whatever a checkout made of them."""
    return (VECTORS / name).read_bytes().decode().replace("\r\n", "\n").replace("\n", "\r\n")


CHROMIUM = _vector("chromium_offer.sdp")
AIORTC = _vector("aiortc_offer.sdp")

UFRAG = "nodeUfrg"
PWD = "node+password/with24char"
FINGERPRINT = "sha-256 " + ":".join(f"{b * 7 % 256:02X}" for b in range(32))
# the default candidate is the first UDP one (RFC 8839 §4.2.1.2): not the first of all
CANDIDATES = (
    Candidate("tls443", 1, "tcp", 1518280447, "192.0.2.7", 443, tcptype="passive"),
    Candidate("udp5004", 1, "udp", 2130706431, "192.0.2.5", 5004),
    Candidate("udp33434", 1, "udp", 2130706175, "198.51.100.9", 33434),
)
AUDIO_OUT = SendStream(0x0BADCAFE, "pinhole-node", "node-stream node-audio")
VIDEO_OUT = SendStream(0x0DEFACED, "pinhole-node", "node-stream node-video")


def answer(offer: Offer, **kwargs: Any) -> Answer:
    arguments: dict[str, Any] = {"ice_ufrag": UFRAG, "ice_pwd": PWD,
                                 "fingerprint": FINGERPRINT, "candidates": CANDIDATES,
                                 "session_id": 7041954312, **kwargs}
    return build_answer(offer, **arguments)


def edit(text: str, old: str, new: str, count: int = -1) -> str:
    """The vector with ``old`` replaced; ``old`` must be there (an edit that misses fails)."""
    assert old in text
    return text.replace(old, new, count)


def refused(text: str) -> SdpError:
    with pytest.raises(SdpError) as info:
        parse_offer(text)
    return info.value


def lines_of(sdp: str, prefix: str) -> list[str]:
    return [line for line in sdp.split("\r\n") if line.startswith(prefix)]


# ----------------------------------------------------------------------------- parse


def test_chromium_offer_parses() -> None:
    """RFC 8839 §5.4 (ufrag, pwd), RFC 8122 §5 (fingerprint), RFC 8842 §5.2 (actpass),
    RFC 8843 (BUNDLE), RFC 5576 §4.2 (FID): Chromium 156's offer read as it says."""
    offer = parse_offer(CHROMIUM)
    assert (offer.ice_ufrag, offer.ice_pwd) == ("XB9t", "v6oh2gpeXfm9mv0osuCRA6UA")
    assert offer.fingerprint == (
        "sha-256 AB:84:11:BE:DF:AA:5E:34:C3:2B:53:9A:11:78:32:86:21:28:B2:72:AD:B2:EF:25:63:"
        "10:C8:51:E0:F1:22:0B")
    assert offer.setup == "actpass"
    assert offer.bundle == ("0", "1", "2", "3", "4")
    assert offer.ice_options == ("trickle",)
    assert [(m.mid, m.kind, m.direction) for m in offer.media] == [
        ("0", "audio", "sendrecv"), ("1", "video", "sendrecv"), ("2", "audio", "recvonly"),
        ("3", "video", "recvonly"), ("4", "application", "sendrecv")]
    audio, video, _, video_in, data = offer.media
    assert audio.codecs[0] == Codec(111, "opus", 48000, 2, "minptime=10;useinbandfec=1",
                                    ("transport-cc",))
    assert [(c.payload_type, c.name) for c in audio.codecs[3:5]] == [(0, "PCMU"), (8, "PCMA")]
    assert video.codecs[0] == Codec(96, "VP8", 90000, None, None,
                                    ("goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"))
    assert video.codecs[1] == Codec(97, "rtx", 90000, None, "apt=96", ())
    assert audio.ssrcs == (1495165033,)
    assert video.ssrcs == (3757318080, 1431557524)
    assert video.ssrc_groups == (("FID", (3757318080, 1431557524)),)
    assert video.msid == ("5697cf24-1aff-4f47-85cc-7e41cc460bc4 "
                          "2cc3022c-d70e-437a-9de3-e6d652775e89")
    assert len(video_in.codecs) == 34 and video_in.ssrcs == () and video_in.msid is None
    assert (data.protocol, data.formats, data.codecs, data.rtcp_mux) == (
        "UDP/DTLS/SCTP", ("webrtc-datachannel",), (), False)
    assert all(m.rtcp_mux and m.port == 9 for m in offer.media[:4])


def test_aiortc_offer_parses() -> None:
    """aiortc 1.16's offer: three fingerprints (RFC 8122 §5 allows several; the strongest
    hash function is kept), its own payload types, an FID group per video section."""
    offer = parse_offer(AIORTC)
    assert (offer.ice_ufrag, offer.ice_pwd, offer.setup) == (
        "wW0R", "RwfLKdaZ4zi55n9Stk7I2M", "actpass")
    assert [f.split()[0] for f in offer.fingerprints] == ["sha-256", "sha-384", "sha-512"]
    assert offer.fingerprint == offer.fingerprints[2]
    assert offer.bundle == ("0", "1", "2", "3", "4") and offer.ice_options == ()
    assert [(m.mid, m.kind, m.direction) for m in offer.media] == [
        ("0", "audio", "sendrecv"), ("1", "video", "sendrecv"), ("2", "audio", "recvonly"),
        ("3", "video", "recvonly"), ("4", "application", "sendrecv")]
    assert [(c.payload_type, c.name) for c in offer.media[0].codecs] == [
        (96, "opus"), (9, "G722"), (0, "PCMU"), (8, "PCMA")]
    assert offer.media[1].codecs[0] == Codec(97, "VP8", 90000, None, None,
                                             ("nack", "nack pli", "goog-remb"))
    assert offer.media[1].ssrc_groups == (("FID", (1862073291, 1809386737)),)
    assert offer.media[3].ssrcs == (2660517200, 1295349576)
    assert offer.media[0].port == 58598


def test_values_that_look_like_numbers_are_kept_as_written() -> None:
    """Defect pinned: sdp_transform turns "0123" into 123 and "0" into 0; a 4-char
    Chromium ufrag is all digits about once in 1,700 offers (RFC 8839 §5.4: ice-chars)."""
    text = edit(edit(CHROMIUM, "a=ice-ufrag:XB9t", "a=ice-ufrag:0123"), "a=mid:0", "a=mid:007")
    text = edit(text, "a=group:BUNDLE 0 1 2 3 4", "a=group:BUNDLE 007")
    offer = parse_offer(text)
    assert offer.ice_ufrag == "0123"
    assert offer.media[0].mid == "007" and offer.bundle == ("007",)


def test_media_level_transport_attributes_win_over_session_level() -> None:
    """RFC 8839 §5.4 and RFC 8122 §5: both levels are allowed; the media level wins."""
    session = ("a=ice-ufrag:sess\r\na=ice-pwd:sessionPasswordOf22chr\r\n"
               "a=fingerprint:sha-1 " + ":".join(["0A"] * 20) + "\r\n")
    text = edit(CHROMIUM, "a=extmap-allow-mixed\r\n", session)
    offer = parse_offer(text)
    assert offer.ice_ufrag == "XB9t" and offer.fingerprint.startswith("sha-256 ")
    only_session = re.sub(r"a=(ice-ufrag|ice-pwd|fingerprint):[^\r]*\r\n", "", CHROMIUM)
    offer = parse_offer(edit(only_session, "a=msid-semantic", session + "a=msid-semantic"))
    assert (offer.ice_ufrag, offer.ice_pwd) == ("sess", "sessionPasswordOf22chr")
    assert offer.fingerprint.startswith("sha-1 ")


def test_static_payload_type_and_wildcard_feedback() -> None:
    """RFC 3551 §6: PT 0 is PCMU/8000 without rtpmap; RFC 4585 §4.2: rtcp-fb "*" is every PT."""
    text = edit(AIORTC, "a=rtpmap:0 PCMU/8000\r\n", "a=rtcp-fb:* nack\r\n", 1)
    audio = parse_offer(text).media[0]
    assert audio.codecs[2] == Codec(0, "PCMU", 8000, None, None, ("nack",))
    assert all(c.rtcp_fb == ("nack",) for c in audio.codecs)


# ----------------------------------------------------------------------------- errors


def test_too_large_is_refused_before_parsing() -> None:
    """64 KiB of UTF-8, counted in bytes: 40,000 two-byte characters are too many."""
    error = refused("v=0\r\n" + "a=x\r\n" * (MAX_SDP_BYTES // 5))
    assert (error.reason, str(error)) == ("too_large", "an SDP offer is at most 65536 bytes")
    assert refused("v=0\r\ns=" + "é" * 40_000).reason == "too_large"
    assert parse_offer(edit(CHROMIUM, "s=-", "s=" + "é" * 20_000)).ice_ufrag == "XB9t"


@pytest.mark.parametrize(("text", "message"), [
    ("v=0\r\n" + "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n" * (MAX_MEDIA + 1),
     "an SDP offer has at most 16 m= sections"),
    ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF " + " ".join(map(str, range(MAX_CODECS + 1))),
     "an m= section has at most 64 payload types"),
    ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n" + "a=rtpmap:0 PCMU/8000\r\n" * (MAX_CODECS + 1),
     "an m= section has at most 64 payload types"),
    ("v=0\r\n" + "".join(f"a=ssrc:{n} cname:x\r\n" for n in range(MAX_SSRCS + 1)),
     "an SDP offer has at most 64 SSRCs"),
    ("v=0\r\n" + "a=x\r\n" * MAX_LINES, "an SDP offer has at most 4096 lines"),
])
def test_limits(text: str, message: str) -> None:
    """Counts bounded before sdp_transform sees the text (an unknown a= line costs it
    every grammar rule)."""
    error = refused(text)
    assert (error.reason, str(error)) == ("limit", message)


def test_chromium_video_section_is_within_the_codec_limit() -> None:
    """Defect pinned: a limit of 32 payload types refused Chromium 156's own offer, whose
    recvonly video section lists 34."""
    assert len(parse_offer(CHROMIUM).media[3].formats) == 34 <= MAX_CODECS


@pytest.mark.parametrize(("old", "new", "message"), [
    ("v=0", "hello", "an SDP offer starts with v=0 (RFC 8866 §5.1)"),
    ("s=-", "s=-\r\nnot a line", "line 4 is not <type>=<value> (RFC 8866 §5)"),
    ("a=ice-ufrag:XB9t", "a=ice-ufrag:XB_9t", "an ice-ufrag is 4 to 256 ice-chars (RFC 8839 §5.4)"),
    ("a=ice-pwd:v6oh2gpeXfm9mv0osuCRA6UA", "a=ice-pwd:short",
     "an ice-pwd is 22 to 256 ice-chars (RFC 8839 §5.4)"),
    ("a=ssrc:1495165033 cname", "a=ssrc:4294967296 cname",
     "an SSRC (RFC 3550 §5.1) is a number from 0 to 4294967295"),
    ("a=ssrc-group:FID 3757318080", "a=ssrc-group:FID 99999999999",
     "an SSRC (RFC 3550 §5.1) is a number from 0 to 4294967295"),
    ("a=ssrc-group:FID 3757318080", "a=ssrc-group:FID " + "9" * 5000,  # int() refuses those
     "an SSRC (RFC 3550 §5.1) is a number from 0 to 4294967295"),
    ("SAVPF 111 63", "SAVPF 128 63", "a payload type (RFC 3550 §5.1) is a number from 0 to 127"),
    ("a=rtpmap:111 opus", "a=rtpmap:300 opus",
     "a payload type (RFC 3550 §5.1) is a number from 0 to 127"),
    ("a=fingerprint:sha-256 AB:84", "a=fingerprint:sha-256 AB-84",
     "an a=fingerprint is '<hash-func> XX:XX:...' (RFC 8122 §5)"),
    ("a=fingerprint:sha-256 AB:84:", "a=fingerprint:sha-256 ",
     "a sha-256 fingerprint is 32 bytes (RFC 8122 §5)"),
    ("a=mid:1", "a=mid:0", "two m= sections have the same mid (RFC 5888 §4)"),
    ("a=mid:1", "a=mid:" + "1" * 33,
     "m= section 2 has a mid that is not a token of 1 to 32 chars (RFC 5888 §4)"),
    ("a=mid:1", "a=mid:(1)", "m= section 2 has a mid that is not a token of 1 to 32 chars "
     "(RFC 5888 §4)"),
    ("BUNDLE 0 1 2 3 4", "BUNDLE 0 1 2 3 9",
     "the BUNDLE group names a mid of no m= section, or none (RFC 5888 §5)"),
    ("m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126", "m=audio",
     "m= line 1 is not <media> <port> <proto> <fmt> ... (RFC 8866 §5.14)"),
    ("m=audio 9 UDP", "m=audio 70000 UDP", "a port is a number from 0 to 65535"),
    ("a=rtpmap:0 PCMU/8000", "a=rtpmap:PCMU/8000",
     "an a=rtpmap line is not <pt> <name>/<rate>[/<channels>] (RFC 8866 §6.6)"),
    ("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMU/x", "a clock rate is a number from 1 to 4294967295"),
    ("a=ssrc:1495165033 cname:", "a=ssrc:1495165033/cname:",
     "an a=ssrc line is not <ssrc-id> <attribute>[:<value>] (RFC 5576 §4.1)"),
    ("a=setup:actpass", "a=setup:client", "a=setup is actpass, active, passive or holdconn "
     "(RFC 4145 §4)"),
    ("a=sendrecv\r\na=msid:5697cf24-1aff-4f47-85cc-7e41cc460bc4 bcc",
     "a=sendrecv\r\na=inactive\r\na=msid:5697cf24-1aff-4f47-85cc-7e41cc460bc4 bcc",
     "m= section 1 has more than one direction (RFC 8866 §6.7)"),
])
def test_syntax_errors(old: str, new: str, message: str) -> None:
    """Each defect of a real offer, and its exact message."""
    error = refused(edit(CHROMIUM, old, new, 1))
    assert (error.reason, str(error)) == ("syntax", message)


@pytest.mark.parametrize(("pattern", "message"), [
    (r"a=ice-ufrag:[^\r]*\r\n", "the offer has no a=ice-ufrag or no a=ice-pwd (RFC 8839 §5.4)"),
    (r"a=ice-pwd:[^\r]*\r\n", "the offer has no a=ice-ufrag or no a=ice-pwd (RFC 8839 §5.4)"),
    (r"a=fingerprint:[^\r]*\r\n", "the offer has no a=fingerprint (RFC 8122 §5)"),
    (r"a=mid:0\r\n", "m= section 1 has no a=mid (RFC 5888 §4)"),
])
def test_missing(pattern: str, message: str) -> None:
    """A required attribute absent from both the media and the session level."""
    text = re.sub(pattern, "", CHROMIUM)
    assert text != CHROMIUM
    error = refused(text)
    assert (error.reason, str(error)) == ("missing", message)


def test_unsupported_offers() -> None:
    """No hash function known (RFC 8122 §5), two BUNDLE groups (the node has one transport)."""
    error = refused(re.sub(r"a=fingerprint:sha-256", "a=fingerprint:md5", CHROMIUM))
    assert (error.reason, str(error)) == (
        "unsupported", "no a=fingerprint of the offer uses a hash function Pinhole knows "
        "(sha-1, sha-224, sha-256, sha-384, sha-512)")
    error = refused(edit(CHROMIUM, "a=group:BUNDLE 0 1 2 3 4",
                         "a=group:BUNDLE 0 1\r\na=group:BUNDLE 2 3 4"))
    assert (error.reason, str(error)) == (
        "unsupported", "an offer with more than one BUNDLE group (RFC 8843)")


# ----------------------------------------------------------------------------- answer


@pytest.mark.parametrize("vector", [CHROMIUM, AIORTC], ids=["chromium", "aiortc"])
def test_answer_session_level(vector: str) -> None:
    """RFC 8839 §5.3: a=ice-lite at session level; RFC 8843 §7.3: BUNDLE with the
    accepted mids in offer order (the data channel's "4" left out, §7.3.3)."""
    sdp = answer(parse_offer(vector)).sdp
    tree = sdp_transform.parse(sdp)
    assert (tree["version"], tree["name"], tree["timing"]) == (0, "-", {"start": 0, "stop": 0})
    assert tree["origin"]["sessionId"] == 7041954312
    head = sdp.split("\r\nm=")[0].split("\r\n")
    assert "a=ice-lite" in head and "a=msid-semantic: WMS *" in head
    assert all("icelite" not in m for m in tree["media"])
    # aiortc refuses an answer whose rejected section has no ICE credentials or setup
    assert (tree["iceUfrag"], tree["icePwd"], tree["setup"]) == (UFRAG, PWD, "passive")
    assert f"{tree['fingerprint']['type']} {tree['fingerprint']['hash']}" == FINGERPRINT
    assert tree["groups"] == [{"type": "BUNDLE", "mids": "0 1 2 3"}]


@pytest.mark.parametrize("vector", [CHROMIUM, AIORTC], ids=["chromium", "aiortc"])
def test_answer_sections(vector: str) -> None:
    """RFC 3264 §6: one m= section per offered one, same order and mid; §6.1: the offer's
    payload types, only opus and PCMU, VP8, no rtx/red/ulpfec, no header extension;
    RFC 8842 §5.1: setup passive; RFC 8839 §5.1 and §4.2.1.2: every candidate, the first
    UDP one in c= and m=; RFC 6544 §4.5: TCP ones passive; RFC 8840 §8.2."""
    offer = parse_offer(vector)
    sdp = answer(offer).sdp
    media = sdp_transform.parse(sdp)["media"]
    assert [(str(m["mid"]), m["type"]) for m in media] == [(m.mid, m.kind) for m in offer.media]
    pts = {c.name: c.payload_type for m in offer.media[:2] for c in m.codecs}
    for section in media[:4]:
        assert (section["port"], section["connection"]) == (5004, {"version": 4, "ip": "192.0.2.5"})
        assert section["setup"] == "passive" and section["rtcpMux"] == "rtcp-mux"
        assert (section["iceUfrag"], section["icePwd"]) == (UFRAG, PWD)
        assert f"{section['fingerprint']['type']} {section['fingerprint']['hash']}" == FINGERPRINT
        assert [c["port"] for c in section["candidates"]] == [443, 5004, 33434]
        assert section["endOfCandidates"] == "end-of-candidates"
        assert "ext" not in section
    assert [(r["payload"], r["codec"]) for r in media[0]["rtp"]] == [
        (pts["opus"], "opus"), (pts["PCMU"], "PCMU")]
    assert [(r["payload"], r["codec"]) for r in media[1]["rtp"]] == [(pts["VP8"], "VP8")]
    assert {f"{f['type']} {f.get('subtype') or ''}".strip() for f in media[1]["rtcpFb"]} == {
        "nack", "nack pli", "goog-remb"} | ({"ccm fir"} if vector is CHROMIUM else set())
    assert all(f["payload"] == pts["VP8"] for f in media[1]["rtcpFb"])
    tcp = lines_of(sdp, "a=candidate:tls443 ")
    assert tcp == ["a=candidate:tls443 1 tcp 1518280447 192.0.2.7 443 typ host tcptype passive"] * 4
    assert not re.search(r"rtx|red/|ulpfec|extmap|transport-cc", sdp)
    data = media[4]
    assert (data["port"], data["protocol"], data["payloads"], str(data["mid"])) == (
        0, "UDP/DTLS/SCTP", "webrtc-datachannel", "4")
    assert not {"direction", "candidates", "iceUfrag", "setup"} & set(data)


def test_answer_keeps_the_offer_fmtp_of_kept_codecs() -> None:
    """RFC 3264 §6.1: opus answered with the offer's own PT and fmtp."""
    sdp = answer(parse_offer(CHROMIUM)).sdp
    assert lines_of(sdp, "a=fmtp:") == ["a=fmtp:111 minptime=10;useinbandfec=1"] * 2


@pytest.mark.parametrize(("offered", "sends", "answered"), [
    ("sendrecv", True, "sendrecv"), ("sendrecv", False, "recvonly"),
    ("recvonly", True, "sendonly"), ("recvonly", False, "inactive"),
    ("sendonly", True, "recvonly"), ("sendonly", False, "recvonly"),
    ("inactive", True, "inactive"), ("inactive", False, "inactive"),
])
def test_answered_direction(offered: str, sends: bool, answered: str) -> None:
    """RFC 3264 §6.1: the answer's direction from the offer's and the node's stream."""
    text = edit(AIORTC, "a=sendrecv\r\n", f"a={offered}\r\n", 1)
    result = answer(parse_offer(text), send_streams={"0": AUDIO_OUT} if sends else {})
    assert result.media[0].direction == answered
    assert sdp_transform.parse(result.sdp)["media"][0]["direction"] == answered
    assert (result.media[0].send is not None) == (answered in ("sendrecv", "sendonly"))
    assert result.media[0].receive_ssrcs == (
        (2909869703,) if answered in ("sendrecv", "recvonly") else ())


def test_a_sending_section_announces_its_stream() -> None:
    """RFC 5576 §4.1: a=ssrc with cname and msid; RFC 8830 §2: a=msid."""
    result = answer(parse_offer(CHROMIUM), send_streams={"0": AUDIO_OUT, "3": VIDEO_OUT})
    media = sdp_transform.parse(result.sdp)["media"]
    assert media[0]["msid"] == "node-stream node-audio"
    assert media[0]["ssrcs"] == [
        {"id": 0x0BADCAFE, "attribute": "cname", "value": "pinhole-node"},
        {"id": 0x0BADCAFE, "attribute": "msid", "value": "node-stream node-audio"}]
    assert (media[3]["direction"], media[3]["ssrcs"][0]["id"]) == ("sendonly", 0x0DEFACED)
    assert "ssrcs" not in media[1] and "msid" not in media[1]
    assert [a.send for a in result.media] == [AUDIO_OUT, None, None, VIDEO_OUT, None]


@pytest.mark.parametrize(("old", "new"), [
    ("m=video 35804 UDP/TLS/RTP/SAVPF 97 98", "m=video 0 UDP/TLS/RTP/SAVPF 97 98"),
    ("BUNDLE 0 1 2 3 4", "BUNDLE 0 2 3 4"),
    ("a=rtpmap:97 VP8/90000", "a=rtpmap:97 AV1/90000"),
    ("m=video 35804 UDP/TLS/RTP/SAVPF", "m=video 35804 RTP/AVP"),
    ("a=rtcp-mux\r\na=ssrc-group:FID 1862073291", "a=ssrc-group:FID 1862073291"),
])
def test_a_section_that_cannot_be_accepted_is_rejected(old: str, new: str) -> None:
    """RFC 3264 §6, RFC 8843 §7.3.3: port 0, outside BUNDLE, no VP8, no DTLS-SRTP, no
    rtcp-mux: the section is rejected (port 0, no direction), the others answered."""
    result = answer(parse_offer(edit(AIORTC, old, new, 1)))
    media = sdp_transform.parse(result.sdp)["media"]
    assert media[1]["port"] == 0 and "direction" not in media[1] and str(media[1]["mid"]) == "1"
    assert result.media[1].accepted is False and result.media[1].codecs == ()
    assert [a.accepted for a in result.media] == [True, False, True, True, False]
    assert sdp_transform.parse(result.sdp)["groups"][0]["mids"] == "0 2 3"


@pytest.mark.parametrize(("setup", "message"), [
    ("passive", "an offer with a=setup:passive leaves the node no DTLS role: it is the DTLS "
     "server (RFC 8842 §5.1)"),
    ("holdconn", "an offer with a=setup:holdconn leaves the node no DTLS role: it is the DTLS "
     "server (RFC 8842 §5.1)"),
])
def test_an_offer_that_will_not_be_the_dtls_client_is_unsupported(setup: str,
                                                                  message: str) -> None:
    """RFC 8842 §5.1 / RFC 5763 §5: the node answers passive, so the offerer is active."""
    offer = parse_offer(edit(CHROMIUM, "a=setup:actpass", f"a=setup:{setup}"))
    with pytest.raises(SdpError) as info:
        answer(offer)
    assert (info.value.reason, str(info.value)) == ("unsupported", message)


def test_active_and_absent_setup_are_answered_passive() -> None:
    """RFC 8842 §5.1: an answer to active is passive; RFC 4145 §4: no setup is active."""
    for text in (edit(AIORTC, "a=setup:actpass", "a=setup:active"),
                 edit(AIORTC, "a=setup:actpass\r\n", "")):
        assert parse_offer(text).setup == "active"
        assert lines_of(answer(parse_offer(text)).sdp, "a=setup:") == ["a=setup:passive"] * 5


def test_offers_that_cannot_be_answered() -> None:
    """No BUNDLE group (RFC 8843: one transport), no section acceptable."""
    with pytest.raises(SdpError) as info:
        answer(parse_offer(edit(CHROMIUM, "a=group:BUNDLE 0 1 2 3 4\r\n", "")))
    assert (info.value.reason, str(info.value)) == (
        "unsupported", "an offer without a BUNDLE group: the node answers every section on one "
        "transport (RFC 8843)")
    with pytest.raises(SdpError) as info:
        answer(parse_offer(AIORTC), supported=())
    assert (info.value.reason, str(info.value)) == (
        "unsupported", "no m= section of the offer can be answered: none offers a supported "
        "codec over DTLS-SRTP in the BUNDLE group")


def test_the_ice_pwd_stays_out_of_repr() -> None:
    """Credentials are not logged by accident: repr hides both passwords; .sdp has the node's."""
    offer = parse_offer(CHROMIUM)
    result = answer(offer, send_streams={"0": AUDIO_OUT})
    assert "v6oh2gpeXfm9mv0osuCRA6UA" not in repr(offer)
    assert PWD not in repr(result) and PWD not in repr(result.media)
    assert f"a=ice-pwd:{PWD}" in result.sdp


def test_wrong_arguments_of_the_caller() -> None:
    """The node's own values are checked: ValueError, not a malformed answer."""
    offer = parse_offer(AIORTC)
    bad: list[dict[str, Any]] = [
        {"candidates": ()}, {"fingerprint": "sha-256 AB"}, {"ice_pwd": "short"},
        {"session_id": 1 << 63}, {"send_streams": {"9": AUDIO_OUT}},
        {"send_streams": {"0": SendStream(2909869703, "n", "s t")}},  # the offerer's SSRC
        {"send_streams": {"0": AUDIO_OUT, "1": AUDIO_OUT}},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):
            answer(offer, **kwargs)
    with pytest.raises(ValueError, match="RFC 6544"):
        Candidate("t1", 1, "tcp", 1, "192.0.2.1", 443)
    with pytest.raises(ValueError):
        SendStream(1, "cname", "too many msid words")


# ----------------------------------------------------------------------------- any input

_MUTATIONS = st.sampled_from(
    ["delete", "duplicate", "replace", "insert", "truncate", "number", "digits"])


@given(st.text(max_size=2000))
def test_random_text_raises_only_sdp_error(text: str) -> None:
    """No exception but SdpError escapes parse_offer, for any text at all."""
    try:
        parse_offer("v=0\r\n" + text)
        parse_offer(text)
    except SdpError:
        pass


@given(st.sampled_from([CHROMIUM, AIORTC]), st.lists(st.tuples(
    _MUTATIONS, st.integers(0, 1 << 16), st.text(max_size=40)), min_size=1, max_size=6))
def test_mutated_real_offers_raise_only_sdp_error(
        vector: str, mutations: list[tuple[str, int, str]]) -> None:
    """Real offers with lines deleted, repeated, replaced, spliced, cut, or numbers changed
    (some longer than int() takes): parse_offer and build_answer raise SdpError or nothing."""
    lines = vector.split("\r\n")
    for kind, where, text in mutations:
        at = where % len(lines)
        if kind == "delete" and len(lines) > 1:
            del lines[at]
        elif kind == "duplicate":
            lines.insert(at, lines[at])
        elif kind == "replace":
            lines[at] = text
        elif kind == "insert":
            cut = where % (len(lines[at]) + 1)
            lines[at] = lines[at][:cut] + text + lines[at][cut:]
        elif kind == "truncate":
            lines[at] = lines[at][: where % (len(lines[at]) + 1)]
        elif kind == "number":
            lines[at] = re.sub(r"\d+", str(where * 65537), lines[at], count=1)
        else:  # past the 4,300 digits int() takes
            lines[at] = re.sub(r"\d+", "9" * (where % 6000), lines[at], count=1)
    try:
        offer = parse_offer("\r\n".join(lines))
        streams = {"0": AUDIO_OUT} if "0" in {m.mid for m in offer.media} else {}
        answer(offer, send_streams=streams)
    except SdpError:
        pass
