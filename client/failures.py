"""What the ``pinhole`` CLI says when something fails: the address, the flag, the next step.

Maps the client library's and aiohttp's exceptions to
:class:`~edge.boundary.Failure` (exit codes in :mod:`edge.boundary`); the
CLI's error boundary calls :func:`translate` with what the command was using.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

import aiohttp

from client.api import ApiError, InspectionError, PinError
from client.inspection import inspection_message
from client.media import MediaError
from client.proxy import ProxyError
from edge.boundary import ExitCode, Failure
from wire.errors import ProfileRefused

NETCHECK = "'pinhole netcheck' shows what gets out of this network"
TIMED_OUT = ("timed out: nothing answered (the cloud's HTTPS, or a media node); if this "
             "network lets only an HTTP proxy out, pass --proxy or set HTTPS_PROXY; "
             "'pinhole netcheck' shows what gets out")


@dataclass
class Context:
    """What the command was talking to, filled in as the settings become known."""

    cloud: str = ""
    proxy: str = ""
    ca: str = ""


def _reason(exc: aiohttp.ClientConnectorError) -> str:
    os_error = exc.os_error
    if isinstance(os_error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "the name does not resolve"
    text = os.strerror(os_error.errno) if os_error.errno else str(os_error)
    return (text or type(os_error).__name__).lower()


def _trust(exc: aiohttp.ClientConnectorError, ctx: Context) -> Failure:
    """An untrusted certificate: what a box that re-signs TLS with its own CA looks like."""
    where = f"{exc.host}:{exc.port}"
    detail = ""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        if isinstance(cert_error, ssl.SSLCertVerificationError):
            detail = f" ({getattr(cert_error, 'verify_message', None) or cert_error})"
    ca = f"--ca {ctx.ca}" if ctx.ca else "the system's CAs (no --ca given)"
    return Failure(ExitCode.TRUST, "tls_verify", inspection_message(
        [where], f"the certificate presented at {where} did not verify against {ca}{detail}, "
        "as when a box re-signs TLS with a CA this device does not trust"),
        "or, if this device has the wrong CA, pass the one that signed the cloud's "
        "certificate with --ca")


def translate(exc: BaseException, ctx: Context) -> Failure | None:
    """The failure for ``exc``, naming the cloud, proxy or CA in ``ctx``; None if unknown."""
    if isinstance(exc, PinError):
        return Failure(ExitCode.TRUST, "pin_mismatch", str(exc),
                       "'pinhole pin' shows the pins in effect and where they come from")
    if isinstance(exc, InspectionError):
        return Failure(ExitCode.TRUST, "tls_inspection", str(exc),
                       "ask the network's administrators to exempt those addresses from TLS "
                       "inspection; 'pinhole netcheck' lists every one it sees")
    if isinstance(exc, ApiError):
        if exc.code == "no_media_node":  # the cloud found no node this device reached
            return Failure(ExitCode.NO_MEDIA, "no_media_path", f"no media path: {exc.detail}",
                           NETCHECK + " and which firewall rules to open")
        if exc.status == 401 and exc.code == "unauthorized":
            return Failure(ExitCode.USAGE, "unauthorized", f"the cloud refused us: {exc.detail}",
                           "check --org and --enrollment-key (or --stack)")
        if exc.status == 404 and exc.detail.startswith("no meeting "):
            return Failure(ExitCode.USAGE, "unknown_meeting", f"the cloud has {exc.detail}",
                           "create one with 'pinhole meeting create' (or add --create), or "
                           "check the id")
        return Failure(ExitCode.OTHER, exc.code, f"the cloud answered {exc}", NETCHECK
                       if exc.status >= 500 else "check the ids and flags it names")
    if isinstance(exc, MediaError):
        return Failure(ExitCode.NO_MEDIA, "no_media_path", str(exc), NETCHECK +
                       " and which firewall rules to open")
    if isinstance(exc, ProfileRefused):  # the seeds' profile table forbids what was asked
        return Failure(ExitCode.USAGE, "profile_refused", str(exc),
                       "choose another --profile, or drop the flag it refuses")
    if isinstance(exc, ProxyError):
        return Failure(ExitCode.NO_CLOUD, "proxy", str(exc),
                       "check --proxy, --pac-url or HTTPS_PROXY (and that the proxy runs)")
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return Failure(ExitCode.NO_CLOUD, "proxy_unreachable",
                       f"cannot reach the proxy at {exc.host}:{exc.port} ({_reason(exc)})",
                       "is it running? check --proxy or HTTPS_PROXY")
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return Failure(ExitCode.NO_CLOUD, "proxy_refused",
                       f"the proxy {ctx.proxy or ''} refused the connection to the cloud: "
                       f"{exc.status} {exc.message}",
                       "check the proxy's credentials (--proxy http://user:pass@host:port) "
                       "and that it allows CONNECT to the cloud's port")
    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
        return _trust(exc, ctx)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Failure(ExitCode.NO_CLOUD, "cloud_unreachable",
                       f"cannot reach the cloud at {exc.host}:{exc.port} ({_reason(exc)})",
                       f"is it running? check --cloud; {NETCHECK}")
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError,
                        aiohttp.ClientPayloadError, aiohttp.ClientResponseError)):
        hint = ("it may serve HTTPS: use https:// in --cloud"
                if ctx.cloud.startswith("http://") else f"is it a Pinhole cloud? {NETCHECK}")
        return Failure(ExitCode.NO_CLOUD, "cloud_disconnected",
                       f"the cloud at {ctx.cloud} broke off the conversation "
                       f"({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})", hint)
    if isinstance(exc, aiohttp.InvalidURL):
        return Failure(ExitCode.USAGE, "usage", f"not a URL: {exc}",
                       "give --cloud as https://HOST[:PORT]")
    if isinstance(exc, TimeoutError):
        return Failure(ExitCode.NO_CLOUD, "timeout", TIMED_OUT)
    return None
