"""SRTP contexts on pylibsrtp: one per leg and direction (RFC 3711; RFC 7714 for GCM).

Keys are created by the cloud, one master key + salt per leg and direction,
and delivered SDES-style over TLS signaling (DESIGN.md "SRTP"). A sender
protects any SSRC (``SSRC_ANY_OUTBOUND``: the relay re-protects every other
participant's stream with one context per receiving leg); a receiver takes
any SSRC (``SSRC_ANY_INBOUND``). Failures raise :class:`SrtpError` with a
counter-friendly ``reason``: ``auth`` (RFC 3711 §3.3 step 5: the tag did not
verify), ``replay`` (§3.3.2) or ``error``. Key material never appears in a
``repr``, ``str`` or error message.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import pylibsrtp

from wire.errors import SrtpError


class SrtpProfile(StrEnum):
    AES_CM_128_HMAC_SHA1_80 = "AES_CM_128_HMAC_SHA1_80"  # RFC 3711 §8.2 (RFC 5764 §4.1.2)
    AEAD_AES_128_GCM = "AEAD_AES_128_GCM"  # RFC 7714 §14.2


DEFAULT_PROFILE: Final = SrtpProfile.AES_CM_128_HMAC_SHA1_80

_LIBSRTP: Final = {
    SrtpProfile.AES_CM_128_HMAC_SHA1_80: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    SrtpProfile.AEAD_AES_128_GCM: pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
}
_MASTER_LENGTH: Final = {
    SrtpProfile.AES_CM_128_HMAC_SHA1_80: 16 + 14,  # RFC 3711 §8.2: 128-bit key, 112-bit salt
    SrtpProfile.AEAD_AES_128_GCM: 16 + 12,  # RFC 7714 §8.1: 96-bit salt
}
_AUTH_FAILURE: Final = "authentication failure"
_REPLAY_FAILURES: Final = ("replay check failed (bad index)", "replay check failed (index too old)")


def master_length(profile: SrtpProfile) -> int:
    """Bytes of master key + master salt the profile takes."""
    return _MASTER_LENGTH[profile]


@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """A master key and salt for one leg and direction; ``repr`` shows no key material."""

    profile: SrtpProfile
    master: bytes = field(repr=False)

    def __post_init__(self) -> None:
        expected = master_length(self.profile)
        if len(self.master) != expected:
            raise SrtpError("error", f"{self.profile.value} expected {expected} bytes of master "
                            f"key and salt, got {len(self.master)}")

    @classmethod
    def generate(cls, profile: SrtpProfile = DEFAULT_PROFILE) -> SrtpKeys:
        return cls(profile, secrets.token_bytes(master_length(profile)))

    def to_b64(self) -> str:
        return base64.b64encode(self.master).decode()

    @classmethod
    def from_b64(cls, profile: SrtpProfile, text: str) -> SrtpKeys:
        try:
            master = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise SrtpError("error", "SRTP key is not valid base64") from None
        return cls(profile, master)

    def __repr__(self) -> str:
        return f"SrtpKeys(profile={self.profile.value}, master=<redacted>)"

    __str__ = __repr__


def _policy(keys: SrtpKeys, ssrc_type: int) -> Any:
    policy = pylibsrtp.Policy(key=keys.master, ssrc_type=ssrc_type,
                              srtp_profile=_LIBSRTP[keys.profile])
    return policy


def _error(exc: pylibsrtp.Error, what: str) -> SrtpError:
    text = str(exc)
    if text == _AUTH_FAILURE:
        return SrtpError("auth", f"{what}: authentication failed")
    if text in _REPLAY_FAILURES:
        return SrtpError("replay", f"{what}: replayed or too old")
    return SrtpError("error", f"{what} failed: {text}")


class SrtpSender:
    """Protects outbound RTP and RTCP of any SSRC with one direction's keys."""

    __slots__ = ("profile", "session")

    def __init__(self, keys: SrtpKeys) -> None:
        self.profile = keys.profile
        policy = _policy(keys, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        policy.allow_repeat_tx = True  # a retransmitted packet is not an error on send
        self.session: Any = pylibsrtp.Session(policy=policy)

    def protect(self, rtp: bytes) -> bytes:
        try:
            out: bytes = self.session.protect(rtp)
        except pylibsrtp.Error as exc:
            raise _error(exc, "SRTP protect") from None
        return out

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        try:
            out: bytes = self.session.protect_rtcp(rtcp)
        except pylibsrtp.Error as exc:
            raise _error(exc, "SRTCP protect") from None
        return out

    def __repr__(self) -> str:
        return f"SrtpSender(profile={self.profile.value})"


class SrtpReceiver:
    """Authenticates and decrypts inbound SRTP and SRTCP of any SSRC."""

    __slots__ = ("profile", "session")

    def __init__(self, keys: SrtpKeys) -> None:
        self.profile = keys.profile
        self.session: Any = pylibsrtp.Session(
            policy=_policy(keys, pylibsrtp.Policy.SSRC_ANY_INBOUND))

    def unprotect(self, srtp: bytes) -> bytes:
        try:
            out: bytes = self.session.unprotect(srtp)
        except pylibsrtp.Error as exc:
            raise _error(exc, "SRTP") from None
        return out

    def unprotect_rtcp(self, srtcp: bytes) -> bytes:
        try:
            out: bytes = self.session.unprotect_rtcp(srtcp)
        except pylibsrtp.Error as exc:
            raise _error(exc, "SRTCP") from None
        return out

    def __repr__(self) -> str:
        return f"SrtpReceiver(profile={self.profile.value})"
