"""SRTP contexts (RFC 3711; RFC 7714 for AEAD_AES_128_GCM): both profiles."""

from __future__ import annotations

import pytest

from wire.errors import SrtpError
from wire.rtp import build_rtcp_receiver_report, build_rtp
from wire.srtp import (
    DEFAULT_PROFILE,
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


def test_default_profile_and_key_lengths() -> None:
    """RFC 3711 §8.2: 128-bit key + 112-bit salt; RFC 7714 §8.1: 96-bit salt for GCM."""
    assert DEFAULT_PROFILE is SrtpProfile.AES_CM_128_HMAC_SHA1_80
    assert master_length(SrtpProfile.AES_CM_128_HMAC_SHA1_80) == 30
    assert master_length(SrtpProfile.AEAD_AES_128_GCM) == 28


@pytest.mark.parametrize("profile", PROFILES)
def test_round_trip_rtp_and_rtcp(profile: SrtpProfile) -> None:
    sender, receiver = _pair(profile)
    for seq in range(1, 20):
        packet = sender.protect(_rtp(seq))
        assert packet != _rtp(seq)
        assert receiver.unprotect(packet) == _rtp(seq)
    rr = build_rtcp_receiver_report(ssrc=99)
    assert receiver.unprotect_rtcp(sender.protect_rtcp(rr)) == rr


@pytest.mark.parametrize("profile", PROFILES)
def test_tampered_packet_fails_authentication(profile: SrtpProfile) -> None:
    """RFC 3711 §3.3 step 5: if the tag does not verify, the packet MUST be discarded."""
    sender, receiver = _pair(profile)
    packet = sender.protect(_rtp(1))
    for index in (2, 12, 20, len(packet) - 1):  # header, payload, tag
        tampered = bytearray(packet)
        tampered[index] ^= 0x01
        with pytest.raises(SrtpError) as caught:
            receiver.unprotect(bytes(tampered))
        assert caught.value.reason == "auth", index
    assert receiver.unprotect(packet) == _rtp(1)  # the genuine one still passes


@pytest.mark.parametrize("profile", PROFILES)
def test_replay_is_rejected(profile: SrtpProfile) -> None:
    """RFC 3711 §3.3.2: a packet whose index was already received is discarded."""
    sender, receiver = _pair(profile)
    packet = sender.protect(_rtp(5))
    receiver.unprotect(packet)
    with pytest.raises(SrtpError) as caught:
        receiver.unprotect(packet)
    assert caught.value.reason == "replay"


@pytest.mark.parametrize("profile", PROFILES)
def test_wrong_key_fails_authentication(profile: SrtpProfile) -> None:
    sender, _ = _pair(profile)
    _, other = _pair(profile)
    with pytest.raises(SrtpError) as caught:
        other.unprotect(sender.protect(_rtp(1)))
    assert caught.value.reason == "auth"


@pytest.mark.parametrize("profile", PROFILES)
def test_one_sender_protects_many_ssrcs(profile: SrtpProfile) -> None:
    """The SFU case: a node re-protects every other participant's SSRC with one leg context."""
    sender, receiver = _pair(profile)
    for seq in range(1, 5):
        for ssrc in (111, 222):
            assert receiver.unprotect(sender.protect(_rtp(seq, ssrc))) == _rtp(seq, ssrc)


def test_garbage_is_an_error_not_a_crash() -> None:
    _, receiver = _pair(DEFAULT_PROFILE)
    with pytest.raises(SrtpError) as caught:
        receiver.unprotect(b"\x80" + bytes(5))
    assert caught.value.reason in {"error", "auth"}


@pytest.mark.parametrize("profile", PROFILES)
def test_repr_never_shows_key_material(profile: SrtpProfile) -> None:
    """DESIGN "SRTP": keys never appear in logs."""
    keys = SrtpKeys.generate(profile)
    for text in (repr(keys), str(keys), repr(SrtpSender(keys)), repr(SrtpReceiver(keys))):
        assert keys.to_b64() not in text and keys.master.hex() not in text
        assert str(keys.master) not in text
    assert "redacted" in repr(keys)


def test_base64_round_trip_and_bad_input() -> None:
    keys = SrtpKeys.generate()
    assert SrtpKeys.from_b64(keys.profile, keys.to_b64()) == keys
    with pytest.raises(SrtpError, match=r"^SRTP key is not valid base64$"):
        SrtpKeys.from_b64(DEFAULT_PROFILE, "not base64!")
    with pytest.raises(SrtpError, match=r"^AEAD_AES_128_GCM expected 28 bytes of master key and "
                       r"salt, got 30$"):
        SrtpKeys(SrtpProfile.AEAD_AES_128_GCM, bytes(30))
