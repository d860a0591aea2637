"""The ``srtp`` fuzz target (wire.srtp), and the SRTP keys of the targets and seeds."""

from __future__ import annotations

import contextlib
from typing import Final

from wire.errors import SrtpError
from wire.rtp import build_rtp
from wire.srtp import SrtpKeys, SrtpProfile, SrtpReceiver, SrtpSender

KEYS: Final = {p: SrtpKeys(p, bytes(range(32))[: _len]) for p, _len in
               ((SrtpProfile.AES_CM_128_HMAC_SHA1_80, 30), (SrtpProfile.AEAD_AES_128_GCM, 28))}


def srtp(data: bytes) -> None:
    """wire.srtp: unprotect raises only SrtpError; protect/unprotect round trip."""
    profile = list(KEYS)[data[0] % 2] if data else SrtpProfile.AES_CM_128_HMAC_SHA1_80
    receiver = SrtpReceiver(KEYS[profile])
    for unprotect in (receiver.unprotect, receiver.unprotect_rtcp):
        with contextlib.suppress(SrtpError):
            unprotect(data)
    packet = build_rtp(payload_type=0, sequence=len(data) % 65536, timestamp=7, ssrc=1234,
                       payload=data[:1200])
    fresh = SrtpReceiver(KEYS[profile])
    assert fresh.unprotect(SrtpSender(KEYS[profile]).protect(packet)) == packet
