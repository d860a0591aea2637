"""The exception tree of the wire core.

    WireError                 root: every error raised by ``wire``
    ├── StunError             a STUN message that cannot be parsed or built
    ├── FramingError          an RFC 4571 stream that cannot be decoded
    ├── RtpError              an RTP/RTCP header that cannot be parsed
    ├── SrtpError             SRTP authentication, replay or cipher failure
    ├── DtlsError             a DTLS-SRTP handshake that failed or a record refused (``dtls``)
    ├── SdpError              an SDP offer that cannot be parsed or answered (``sdp``)
    ├── BodyError             an untrusted JSON body: too large, too deep, not UTF-8/JSON
    ├── ProfileRefused        a device profile forbids a transport or proxy use
    └── PinMismatch           a peer's TLS certificate is not the one pinned (``leg_client``)

Each carries an exact message; tests assert on it verbatim.
"""

from __future__ import annotations


class WireError(Exception):
    """Root of every error raised by the wire core."""


class StunError(WireError):
    """A STUN message could not be parsed or built."""


class FramingError(WireError):
    """An RFC 4571 framed stream could not be decoded."""


class RtpError(WireError):
    """An RTP or RTCP header could not be parsed."""


class SrtpError(WireError):
    """SRTP or SRTCP protection failed.

    ``reason`` is a short counter name: ``"auth"`` (authentication tag did not
    verify), ``"replay"`` (index already seen or too old) or ``"error"``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class DtlsError(WireError):
    """A DTLS-SRTP association failed (RFC 5764, RFC 8827).

    ``reason`` is a short counter name: ``"handshake"`` (the TLS handshake
    failed), ``"fingerprint"`` (the peer's certificate is not the one its
    SDP named, RFC 8122 §5), ``"profile"`` (no SRTP protection profile in
    common, RFC 5764 §4.1.2), ``"closed"`` (a record after close) or
    ``"error"``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SdpError(WireError):
    """An SDP offer could not be parsed or answered (RFC 8866, RFC 8829).

    ``reason`` is a short code: ``"too_large"``, ``"syntax"``, ``"missing"``
    (a required attribute is absent), ``"unsupported"`` (nothing in it we can
    answer) or ``"limit"`` (too many media sections, codecs or SSRCs).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BodyError(WireError):
    """An untrusted JSON body was refused.

    ``reason`` is a short code: ``"too_large"``, ``"invalid_utf8"``,
    ``"too_deep"``, ``"invalid_json"`` or ``"invalid_unicode"``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ProfileRefused(WireError):
    """A device profile does not allow what was asked of it."""
