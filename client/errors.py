"""The exception tree of the client library.

    ClientError               root: every error the client library raises itself
    ├── ApiError              the cloud answered with an error (status, code, detail)
    │   └── InspectionError   TLS between this device and the cloud is inspected
    │       └── PinError      the cloud's key is none of the enrollment material's pins
    ├── MediaError            no media leg: no rung of the plan latched, or the leg closed
    ├── ProxyError            the HTTP proxy refused or could not be used
    └── PinsError             a pin that is not ``sha256/<base64>``, or an unreadable pin file
                              (also a ``ValueError``)

Errors of the wire core (:mod:`wire.errors`, rooted at ``WireError``) pass
through unchanged: a ``ProfileRefused`` says which profile forbids what. Each
message says what to do next; :mod:`client.failures` maps them all to the
exit codes of :mod:`edge.boundary`.
"""

from __future__ import annotations

from edge import http_proxy


class ClientError(Exception):
    """Root of every error the client library raises itself."""


class ApiError(ClientError):
    """The cloud answered with an error: ``status``, ``code`` and ``detail``."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class InspectionError(ApiError):
    """Something between this device and the cloud inspects TLS; the message names it."""

    code_name = "tls_inspection"

    def __init__(self, message: str) -> None:
        super().__init__(0, self.code_name, message)
        self.args = (message,)


class PinError(InspectionError):
    """The cloud presented a public key that is none of the enrollment material's pins."""

    code_name = "pin_mismatch"


class MediaError(ClientError):
    """A media leg could not be established."""


class ProxyError(ClientError, http_proxy.ProxyError):
    """The proxy refused or could not be used; the message says what to do."""


class PinsError(ClientError, ValueError):
    """A pin that is not ``sha256/<base64 of 32 bytes>``, or an unreadable pin file."""
