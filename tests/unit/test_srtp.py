"""SRTP contexts (RFC 3711 §3.3, §3.4; RFC 7714 for AEAD_AES_128_GCM): both profiles."""

from __future__ import annotations

import base64

import pytest

from wire.errors import SrtpError
from wire.rtp import build_rtcp_receiver_report, build_rtp
from wire.srtp import (
    DEFAULT_PROFILE,
    REPLAY_WINDOW,
    SrtpKeys,
    SrtpProfile,
    SrtpReceiver,
    SrtpSender,
    master_length,
)

PROFILES = list(SrtpProfile)


def _rtp(seq: int, ssrc: int = 1234) -> bytes:
    return build_rtp(payload_type=0, sequence=seq, timestamp=seq * 160, ssrc=ssrc,
                     payload=bytes([seq & 0xFF]) * 160)


def _pair(profile: SrtpProfile) -> tuple[SrtpSender, SrtpReceiver]:
    keys = SrtpKeys.generate(profile)
    return SrtpSender(keys), SrtpReceiver(keys)


def _reason(call: object, packet: bytes) -> str:
    assert callable(call)
    with pytest.raises(SrtpError) as caught:
        call(packet)
    return caught.value.reason


def test_profile_names_default_and_key_lengths() -> None:
    """RFC 3711 §8.2: 128-bit key + 112-bit salt; RFC 7714 §12: 96-bit salt for GCM."""
    assert [p.value for p in SrtpProfile] == ["AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM"]
    assert DEFAULT_PROFILE is SrtpProfile.AES_CM_128_HMAC_SHA1_80
    assert master_length(SrtpProfile.AES_CM_128_HMAC_SHA1_80) == 30
    assert master_length(SrtpProfile.AEAD_AES_128_GCM) == 28


@pytest.mark.parametrize("profile", PROFILES)
def test_generated_keys_are_random_and_the_right_length(profile: SrtpProfile) -> None:
    a, b = SrtpKeys.generate(profile), SrtpKeys.generate(profile)
    assert a.profile is profile and len(a.master) == master_length(profile)
    assert a.master != b.master


@pytest.mark.parametrize("profile", PROFILES)
def test_round_trip_rtp_and_rtcp(profile: SrtpProfile) -> None:
    """RFC 3711 §3.3 (SRTP) and §3.4 (SRTCP); RFC 7714 §8, §9 for GCM."""
    sender, receiver = _pair(profile)
    for seq in range(1, 20):
        packet = sender.protect(_rtp(seq))
        assert packet[:12] == _rtp(seq)[:12]  # the header is authenticated, not encrypted
        assert packet[12:172] != _rtp(seq)[12:]  # the payload is encrypted
        assert len(packet) > len(_rtp(seq))  # ... and a tag is appended
        assert receiver.unprotect(packet) == _rtp(seq)
    for ssrc in (99, 100):
        rr = build_rtcp_receiver_report(ssrc=ssrc)
        srtcp = sender.protect_rtcp(rr)
        assert srtcp != rr
        assert receiver.unprotect_rtcp(srtcp) == rr


@pytest.mark.parametrize("profile", PROFILES)
def test_tampered_packet_fails_authentication(profile: SrtpProfile) -> None:
    """RFC 3711 §3.3 step 5: if the tag does not verify, the packet MUST be discarded."""
    sender, receiver = _pair(profile)
    packet = sender.protect(_rtp(1))
    for index in (1, 2, 12, 20, len(packet) - 1):  # header, payload, tag
        tampered = bytearray(packet)
        tampered[index] ^= 0x01
        assert _reason(receiver.unprotect, bytes(tampered)) == "auth", index
    assert receiver.unprotect(packet) == _rtp(1)  # the genuine one still passes


@pytest.mark.parametrize("profile", PROFILES)
def test_tampered_rtcp_fails_authentication(profile: SrtpProfile) -> None:
    """RFC 3711 §3.4: SRTCP authentication is mandatory."""
    sender, receiver = _pair(profile)
    packet = bytearray(sender.protect_rtcp(build_rtcp_receiver_report(ssrc=5)))
    packet[6] ^= 0x80
    assert _reason(receiver.unprotect_rtcp, bytes(packet)) == "auth"


@pytest.mark.parametrize("profile", PROFILES)
def test_auth_failure_has_the_exact_message(profile: SrtpProfile) -> None:
    sender, receiver = _pair(profile)
    packet = bytearray(sender.protect(_rtp(1)))
    packet[-1] ^= 0xFF
    with pytest.raises(SrtpError, match=r"^SRTP authentication failed$"):
        receiver.unprotect(bytes(packet))


@pytest.mark.parametrize("profile", PROFILES)
def test_replay_is_rejected(profile: SrtpProfile) -> None:
    """RFC 3711 §3.3.2: a packet whose index was already received is discarded."""
    sender, receiver = _pair(profile)
    packet = sender.protect(_rtp(5))
    receiver.unprotect(packet)
    with pytest.raises(SrtpError, match=r"^SRTP replayed packet$") as caught:
        receiver.unprotect(packet)
    assert caught.value.reason == "replay"


@pytest.mark.parametrize("profile", PROFILES)
def test_replayed_rtcp_is_rejected(profile: SrtpProfile) -> None:
    """RFC 3711 §3.4: SRTCP replay protection by the SRTCP index."""
    sender, receiver = _pair(profile)
    packet = sender.protect_rtcp(build_rtcp_receiver_report(ssrc=5))
    receiver.unprotect_rtcp(packet)
    assert _reason(receiver.unprotect_rtcp, packet) == "replay"


@pytest.mark.parametrize("profile", PROFILES)
def test_a_packet_behind_the_window_is_a_replay(profile: SrtpProfile) -> None:
    """RFC 3711 §3.3.2: an index left of the window is rejected ("index too old")."""
    sender, receiver = _pair(profile)
    first = sender.protect(_rtp(1))
    for seq in range(2, REPLAY_WINDOW + 10):
        receiver.unprotect(sender.protect(_rtp(seq)))
    assert _reason(receiver.unprotect, first) == "replay"


@pytest.mark.parametrize("profile", PROFILES)
def test_reordering_within_the_window_is_accepted(profile: SrtpProfile) -> None:
    sender, receiver = _pair(profile)
    packets = [sender.protect(_rtp(seq)) for seq in range(1, 200)]
    for packet in reversed(packets[1:]):
        receiver.unprotect(packet)
    assert receiver.unprotect(packets[0]) == _rtp(1)


@pytest.mark.parametrize("profile", PROFILES)
def test_wrong_key_fails_authentication(profile: SrtpProfile) -> None:
    sender, _ = _pair(profile)
    _, other = _pair(profile)
    assert _reason(other.unprotect, sender.protect(_rtp(1))) == "auth"
    assert _reason(other.unprotect_rtcp,
                   sender.protect_rtcp(build_rtcp_receiver_report(ssrc=1))) == "auth"


@pytest.mark.parametrize("profile", PROFILES)
def test_one_sender_protects_many_ssrcs(profile: SrtpProfile) -> None:
    """The SFU case: a node re-protects every other participant's SSRC with one leg context."""
    sender, receiver = _pair(profile)
    for seq in range(1, 5):
        for ssrc in (111, 222):
            assert receiver.unprotect(sender.protect(_rtp(seq, ssrc))) == _rtp(seq, ssrc)


@pytest.mark.parametrize("profile", PROFILES)
def test_a_forwarded_duplicate_is_not_a_send_error(profile: SrtpProfile) -> None:
    """The sender allows a repeated index; the receiver is where replays are refused."""
    sender, receiver = _pair(profile)
    once, twice = sender.protect(_rtp(3)), sender.protect(_rtp(3))
    assert once == twice
    receiver.unprotect(once)
    assert _reason(receiver.unprotect, twice) == "replay"


def test_other_failures_are_errors_with_the_library_text() -> None:
    _, receiver = _pair(DEFAULT_PROFILE)
    with pytest.raises(SrtpError, match=r"^SRTP unprotect failed: ") as caught:
        receiver.unprotect(b"\x80" + bytes(5))
    assert caught.value.reason == "error"


def test_oversized_packets_are_srtp_errors() -> None:
    sender, receiver = _pair(DEFAULT_PROFILE)
    huge = _rtp(1) + bytes(1500)
    with pytest.raises(SrtpError, match=r"^SRTP protect failed: ") as caught:
        sender.protect(huge)
    assert caught.value.reason == "error"
    with pytest.raises(SrtpError, match=r"^SRTCP protect failed: "):
        sender.protect_rtcp(huge)
    assert _reason(receiver.unprotect, huge) == "error"


@pytest.mark.parametrize("profile", PROFILES)
def test_repr_never_shows_key_material(profile: SrtpProfile) -> None:
    """docs/design.md "SRTP": keys never appear in logs."""
    keys = SrtpKeys.generate(profile)
    texts = (repr(keys), str(keys), f"{keys}", repr([keys]),
             repr(SrtpSender(keys)), repr(SrtpReceiver(keys)))
    for text in texts:
        assert keys.to_b64() not in text
        assert keys.master.hex() not in text
        assert str(keys.master) not in text
    assert repr(keys) == str(keys) == f"SrtpKeys(profile={profile.value}, master=<redacted>)"


@pytest.mark.parametrize("profile", PROFILES)
def test_base64_round_trip(profile: SrtpProfile) -> None:
    """RFC 4568 §6.1: SDES carries key || salt as base64."""
    keys = SrtpKeys.generate(profile)
    assert base64.b64decode(keys.to_b64()) == keys.master
    assert SrtpKeys.from_b64(profile, keys.to_b64()) == keys


@pytest.mark.parametrize("text", ["not base64!", "QUJ", "QUJDRA==x"])
def test_bad_base64_is_rejected(text: str) -> None:
    with pytest.raises(SrtpError, match=r"^SRTP key is not valid base64$") as caught:
        SrtpKeys.from_b64(DEFAULT_PROFILE, text)
    assert caught.value.reason == "error"


def test_bad_lengths_are_rejected_with_exact_messages() -> None:
    with pytest.raises(SrtpError, match=r"^AEAD_AES_128_GCM expected 28 bytes of master key and "
                       r"salt, got 30$") as caught:
        SrtpKeys(SrtpProfile.AEAD_AES_128_GCM, bytes(30))
    assert caught.value.reason == "error"
    with pytest.raises(SrtpError, match=r"^AES_CM_128_HMAC_SHA1_80 expected 30 bytes of master "
                       r"key and salt, got 28$"):
        SrtpKeys(SrtpProfile.AES_CM_128_HMAC_SHA1_80, bytes(28))
    with pytest.raises(SrtpError, match=r"^AES_CM_128_HMAC_SHA1_80 expected 30 bytes of master "
                       r"key and salt, got 29$"):
        SrtpKeys.from_b64(DEFAULT_PROFILE, base64.b64encode(bytes(29)).decode())
