"""The relay's direct libsrtp calls give exactly what pylibsrtp's public Session gives.

``wire.srtp`` calls libsrtp on pylibsrtp's session with a preallocated buffer
and length cell (about 0.4 µs less per packet). These properties pin that it
changes nothing: the same SRTP/SRTCP bytes out for the same keys and packets
(RFC 3711 §3.3, §3.4; RFC 7714 §8, §9 for GCM), the same clear packets back,
and the same failures (RFC 3711 §3.3 step 5: a bad tag; §3.3.2: a replay).
"""

from __future__ import annotations

from collections.abc import Callable

import pylibsrtp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.errors import SrtpError
from wire.rtp import build_rtcp_receiver_report, build_rtp
from wire.srtp import REPLAY_WINDOW, SrtpKeys, SrtpProfile, SrtpReceiver, SrtpSender

_LIBSRTP = {
    SrtpProfile.AES_CM_128_HMAC_SHA1_80: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    SrtpProfile.AEAD_AES_128_GCM: pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
}


def _reference(keys: SrtpKeys, ssrc_type: int) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(key=keys.master, ssrc_type=ssrc_type,
                              srtp_profile=_LIBSRTP[keys.profile])
    policy.window_size = REPLAY_WINDOW
    policy.allow_repeat_tx = ssrc_type == pylibsrtp.Policy.SSRC_ANY_OUTBOUND
    return pylibsrtp.Session(policy=policy)


profiles = st.sampled_from(list(SrtpProfile))
masters = st.binary(min_size=30, max_size=30)
streams = st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF),
                             st.binary(max_size=1200)), min_size=1, max_size=20)


def _keys(profile: SrtpProfile, master: bytes) -> SrtpKeys:
    return SrtpKeys(profile, master[:30 if profile is SrtpProfile.AES_CM_128_HMAC_SHA1_80
                                    else 28])


def _same(ours: Callable[[bytes], bytes], ref: Callable[[bytes], bytes],
          data: bytes) -> bytes | None:
    """Both give the same bytes, or both refuse (then None)."""
    try:
        expected = ref(data)
    except pylibsrtp.Error:
        with pytest.raises(SrtpError):
            ours(data)
        return None
    got = ours(data)
    assert got == expected
    return got


@given(profiles, masters, streams)
def test_protect_and_unprotect_match_pylibsrtp(
        profile: SrtpProfile, master: bytes, packets: list[tuple[int, int, bytes]]) -> None:
    keys = _keys(profile, master)
    ours_tx, ref_tx = SrtpSender(keys), _reference(keys, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    ours_rx, ref_rx = SrtpReceiver(keys), _reference(keys, pylibsrtp.Policy.SSRC_ANY_INBOUND)
    for seq, ssrc, payload in packets:
        rtp = build_rtp(payload_type=111, sequence=seq, timestamp=seq * 960, ssrc=ssrc,
                        payload=payload)
        srtp = _same(ours_tx.protect, ref_tx.protect, rtp)
        if srtp is not None:
            _same(ours_rx.unprotect, ref_rx.unprotect, srtp)
        srtcp = _same(ours_tx.protect_rtcp, ref_tx.protect_rtcp,
                      build_rtcp_receiver_report(ssrc=ssrc))
        if srtcp is not None:
            _same(ours_rx.unprotect_rtcp, ref_rx.unprotect_rtcp, srtcp)


@given(profiles, masters, st.integers(0, 0xFFFF), st.integers(0, 10_000))
def test_failures_match_pylibsrtp(profile: SrtpProfile, master: bytes, seq: int,
                                  flip: int) -> None:
    """A flipped bit is an auth failure for both; a repeat is a replay for both."""
    keys = _keys(profile, master)
    srtp = SrtpSender(keys).protect(build_rtp(payload_type=0, sequence=seq, timestamp=0,
                                              ssrc=7, payload=bytes(160)))
    bad = bytearray(srtp)
    bad[12 + flip % (len(srtp) - 12)] ^= 1
    ours, ref = SrtpReceiver(keys), _reference(keys, pylibsrtp.Policy.SSRC_ANY_INBOUND)
    with pytest.raises(pylibsrtp.Error, match="authentication failure"):
        ref.unprotect(bytes(bad))
    with pytest.raises(SrtpError) as caught:
        ours.unprotect(bytes(bad))
    assert caught.value.reason == "auth"
    assert ours.unprotect(srtp) == ref.unprotect(srtp)
    with pytest.raises(SrtpError) as caught:
        ours.unprotect(srtp)
    assert caught.value.reason == "replay"


def test_too_long_is_an_error_not_an_overflow() -> None:
    """Past the session buffer: refused with the reason pylibsrtp gives, nothing written."""
    keys = SrtpKeys.generate()
    with pytest.raises(SrtpError, match="packet is too long"):
        SrtpSender(keys).protect(bytes([0x80]) + bytes(1500))
    with pytest.raises(SrtpError) as caught:
        SrtpReceiver(keys).unprotect(bytes([0x80]) + bytes(1600))
    assert caught.value.reason == "error"


@given(profiles, masters, masters, streams)
def test_sealing_what_was_opened_is_protecting_its_clear_bytes(
        profile: SrtpProfile, master_in: bytes, master_out: bytes,
        packets: list[tuple[int, int, bytes]]) -> None:
    """The relay's path for its last receiver (``open`` then ``seal``, in the inbound
    session's buffer) gives the same SRTP and SRTCP bytes as ``protect(unprotect(p))``
    with the same keys (RFC 3711 §3.3, §3.4): two senders with one key, one per way."""
    inbound = _keys(profile, master_in)
    outbound = _keys(profile, master_out)
    source = SrtpSender(inbound)
    opener, unprotector = SrtpReceiver(inbound), SrtpReceiver(inbound)
    sealer, protector = SrtpSender(outbound), SrtpSender(outbound)
    for seq, ssrc, payload in packets:
        rtp = build_rtp(payload_type=111, sequence=seq, timestamp=seq * 960, ssrc=ssrc,
                        payload=payload)
        try:
            srtp = source.protect(rtp)
        except SrtpError:
            continue  # too long to protect at all
        try:
            clear = unprotector.unprotect(srtp)
        except SrtpError as refused:  # a repeated sequence number: a replay for both
            with pytest.raises(SrtpError) as caught:
                opener.open(srtp)
            assert caught.value.reason == refused.reason
            continue
        opener.open(srtp)
        assert opener.opened() == clear == rtp
        _same(lambda _: sealer.seal(opener), protector.protect, clear)
        srtcp = source.protect_rtcp(build_rtcp_receiver_report(ssrc=ssrc))
        clear = unprotector.unprotect_rtcp(srtcp)  # SRTCP indexes never repeat
        opener.open_rtcp(srtcp)
        assert sealer.seal_rtcp(opener) == protector.protect_rtcp(clear)


def test_a_packet_is_sealed_once_and_a_failed_open_leaves_nothing_to_seal() -> None:
    """In place, the clear packet is gone once sealed: a second seal, or a seal after an
    open that failed (a forged or replayed packet), is an error, never a resend of the
    last good packet under new keys."""
    keys = SrtpKeys.generate()
    srtp = SrtpSender(keys).protect(build_rtp(payload_type=0, sequence=1, timestamp=0,
                                              ssrc=7, payload=bytes(160)))
    receiver, sender = SrtpReceiver(keys), SrtpSender(SrtpKeys.generate())
    with pytest.raises(SrtpError, match="no opened packet"):
        sender.seal(receiver)
    receiver.open(srtp)
    assert sender.seal(receiver)
    with pytest.raises(SrtpError, match="no opened packet"):
        sender.seal(receiver)
    with pytest.raises(SrtpError) as caught:
        receiver.open(srtp)  # the same packet again
    assert caught.value.reason == "replay"
    with pytest.raises(SrtpError, match="no opened packet"):
        sender.seal(receiver)
    with pytest.raises(SrtpError) as caught:
        receiver.open(bytes([0x80]) + bytes(1600))
    assert caught.value.reason == "error"
