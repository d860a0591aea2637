"""SRTP contexts on pylibsrtp: one per leg and direction (RFC 3711; RFC 7714 for AES-GCM).

Keys are created by the cloud, one master key + salt per leg and direction,
and delivered SDES-style over TLS signaling (docs/design.md "SRTP"). Profiles:

    AES_CM_128_HMAC_SHA1_80   RFC 3711 §4.1.1, §4.2.1, §8.2 (RFC 4568 §6.2.1 name)
                              128-bit master key + 112-bit master salt = 30 bytes
    AEAD_AES_128_GCM          RFC 7714 §8, §12, §14.1
                              128-bit master key + 96-bit master salt = 28 bytes

A sender protects any SSRC (``SSRC_ANY_OUTBOUND``): the relay re-protects
every other participant's stream with one context per receiving leg. A
receiver takes any SSRC (``SSRC_ANY_INBOUND``). Failures raise
:class:`SrtpError` with a counter-friendly ``reason``:

    auth     RFC 3711 §3.3 step 5 / §3.4: the authentication tag did not verify
             (RFC 7714 §8.3: the AEAD tag, for GCM)
    replay   RFC 3711 §3.3.2: the packet index was already seen or is behind the window
    error    anything else (malformed, too long, cipher failure)

Key material never appears in a ``repr``, ``str`` or error message.
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
    """The SDES crypto-suite names of the profiles Pinhole offers."""

    AES_CM_128_HMAC_SHA1_80 = "AES_CM_128_HMAC_SHA1_80"  # RFC 3711 §8.2, RFC 4568 §6.2.1
    AEAD_AES_128_GCM = "AEAD_AES_128_GCM"  # RFC 7714 §14.1


DEFAULT_PROFILE: Final = SrtpProfile.AES_CM_128_HMAC_SHA1_80

# RFC 3711 §3.3.2 asks for a replay window of at least 64 packets; libsrtp's
# default is 128. A relay sees video bursts reordered by the network, so take
# the larger window that WebRTC endpoints use.
REPLAY_WINDOW: Final = 1024

_LIBSRTP_PROFILE: Final[dict[SrtpProfile, int]] = {
    SrtpProfile.AES_CM_128_HMAC_SHA1_80: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    SrtpProfile.AEAD_AES_128_GCM: pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
}
_MASTER_LENGTH: Final[dict[SrtpProfile, int]] = {
    SrtpProfile.AES_CM_128_HMAC_SHA1_80: 16 + 14,  # RFC 3711 §8.2: 128-bit key, 112-bit salt
    SrtpProfile.AEAD_AES_128_GCM: 16 + 12,  # RFC 7714 §12: 128-bit key, 96-bit salt
}

# pylibsrtp raises Error(text) with libsrtp's status text for the return code.
_AUTH_FAILURES: Final = frozenset({
    "authentication failure",  # srtp_err_status_auth_fail (7)
})
_REPLAY_FAILURES: Final = frozenset({
    "replay check failed (bad index)",  # srtp_err_status_replay_fail (9)
    "replay check failed (index too old)",  # srtp_err_status_replay_old (10)
    "packet index is too old to consider",  # srtp_err_status_pkt_idx_old (26)
})


def master_length(profile: SrtpProfile) -> int:
    """Bytes of master key + master salt the profile takes (30 or 28)."""
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
        """Fresh random key and salt from the operating system's CSPRNG."""
        return cls(profile, secrets.token_bytes(master_length(profile)))

    def to_b64(self) -> str:
        """Key and salt as base64, the SDES inline form (RFC 4568 §6.1)."""
        return base64.b64encode(self.master).decode("ascii")

    @classmethod
    def from_b64(cls, profile: SrtpProfile, text: str) -> SrtpKeys:
        """Keys from :meth:`to_b64` text; bad base64 or a wrong length is an SrtpError."""
        try:
            master = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise SrtpError("error", "SRTP key is not valid base64") from None
        return cls(profile, master)

    def __repr__(self) -> str:
        return f"SrtpKeys(profile={self.profile.value}, master=<redacted>)"

    def __str__(self) -> str:
        return self.__repr__()


def _policy(keys: SrtpKeys, ssrc_type: int) -> Any:
    policy = pylibsrtp.Policy(key=keys.master, ssrc_type=ssrc_type,
                              srtp_profile=_LIBSRTP_PROFILE[keys.profile])
    policy.window_size = REPLAY_WINDOW
    return policy


def _unprotect_error(exc: Exception) -> SrtpError:
    text = str(exc)
    if text in _AUTH_FAILURES:
        return SrtpError("auth", "SRTP authentication failed")
    if text in _REPLAY_FAILURES:
        return SrtpError("replay", "SRTP replayed packet")
    return SrtpError("error", f"SRTP unprotect failed: {text}")


class SrtpSender:
    """Protects outbound RTP and RTCP of any SSRC with one direction's keys."""

    __slots__ = ("profile", "session")

    def __init__(self, keys: SrtpKeys) -> None:
        self.profile: SrtpProfile = keys.profile
        policy = _policy(keys, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        # A packet forwarded twice (a duplicate on the way in) is not a send error.
        policy.allow_repeat_tx = True
        self.session: Any = pylibsrtp.Session(policy=policy)

    def protect(self, rtp: bytes) -> bytes:
        """SRTP from RTP (RFC 3711 §3.3; RFC 7714 §8 for GCM)."""
        try:
            out: bytes = self.session.protect(rtp)
        except (pylibsrtp.Error, ValueError, TypeError) as exc:
            raise SrtpError("error", f"SRTP protect failed: {exc}") from None
        return out

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        """SRTCP from RTCP (RFC 3711 §3.4; RFC 7714 §9 for GCM)."""
        try:
            out: bytes = self.session.protect_rtcp(rtcp)
        except (pylibsrtp.Error, ValueError, TypeError) as exc:
            raise SrtpError("error", f"SRTCP protect failed: {exc}") from None
        return out

    def __repr__(self) -> str:
        return f"SrtpSender(profile={self.profile.value})"


class SrtpReceiver:
    """Authenticates and decrypts inbound SRTP and SRTCP of any SSRC."""

    __slots__ = ("profile", "session")

    def __init__(self, keys: SrtpKeys) -> None:
        self.profile: SrtpProfile = keys.profile
        self.session: Any = pylibsrtp.Session(
            policy=_policy(keys, pylibsrtp.Policy.SSRC_ANY_INBOUND))

    def unprotect(self, srtp: bytes) -> bytes:
        """RTP from SRTP, after the tag and replay checks (RFC 3711 §3.3)."""
        try:
            out: bytes = self.session.unprotect(srtp)
        except (pylibsrtp.Error, ValueError, TypeError) as exc:
            raise _unprotect_error(exc) from None
        return out

    def unprotect_rtcp(self, srtcp: bytes) -> bytes:
        """RTCP from SRTCP, after the tag and replay checks (RFC 3711 §3.4)."""
        try:
            out: bytes = self.session.unprotect_rtcp(srtcp)
        except (pylibsrtp.Error, ValueError, TypeError) as exc:
            raise _unprotect_error(exc) from None
        return out

    def __repr__(self) -> str:
        return f"SrtpReceiver(profile={self.profile.value})"
