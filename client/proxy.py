"""Media through an HTTP proxy: ``CONNECT node:443``, then TLS, then RFC 4571 framing.

Seed: the app "sends the signaling and media through the HTTP proxy" when
nothing else gets out; the proxy must allow CONNECT to port 443. Proxy
authentication here: Basic (RFC 7617) and Digest (RFC 7616, MD5 and
SHA-256, qop=auth). Kerberos is refused with the seed's words; NTLM and
Negotiate are not built yet and say so.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from wire.address import Address


class ProxyError(Exception):
    """The proxy refused or could not be used; the message says what to do."""


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> ProxyConfig:
        parts = urlsplit(url if "://" in url else "http://" + url)
        if parts.scheme != "http" or not parts.hostname:
            raise ProxyError(f"proxy URL {url!r}: use http://[user:password@]host:port")
        return cls(parts.hostname, parts.port or 3128,
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None)

    @property
    def url(self) -> str:
        """For aiohttp's ``proxy=`` (credentials included, for Basic)."""
        creds = f"{self.username}:{self.password}@" if self.username else ""
        return f"http://{creds}{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"ProxyConfig({self.host}:{self.port}, user={self.username!r}, password=<hidden>)"


def proxy_from_environment(target_host: str) -> ProxyConfig | None:
    """``HTTPS_PROXY`` (or ``https_proxy``) unless ``NO_PROXY`` names the host."""
    url = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if not url:
        return None
    no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
    for entry in (e.strip().lstrip(".") for e in no_proxy.split(",") if e.strip()):
        if entry == "*" or target_host == entry or target_host.endswith("." + entry):
            return None
    return ProxyConfig.from_url(url)


def _challenge(headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    value = headers.get("proxy-authenticate") or headers.get("www-authenticate", "")
    scheme, _, rest = value.partition(" ")
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', rest))
    return scheme.lower(), params


def _digest(config: ProxyConfig, params: dict[str, str], uri: str) -> str:
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm not in ("MD5", "SHA-256"):
        raise ProxyError(f"proxy asks for Digest {algorithm}; only MD5 and SHA-256 are known")

    def h(text: str) -> str:
        return (hashlib.md5 if algorithm == "MD5" else hashlib.sha256)(
            text.encode()).hexdigest()

    realm, nonce = params.get("realm", ""), params.get("nonce", "")
    cnonce, nc = os.urandom(8).hex(), "00000001"
    ha1 = h(f"{config.username}:{realm}:{config.password}")
    ha2 = h(f"CONNECT:{uri}")
    if "auth" in params.get("qop", ""):
        response = h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        qop = f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        response, qop = h(f"{ha1}:{nonce}:{ha2}"), ""
    opaque = f', opaque="{params["opaque"]}"' if "opaque" in params else ""
    return (f'Digest username="{config.username}", realm="{realm}", nonce="{nonce}", '
            f'uri="{uri}", algorithm={algorithm}, response="{response}"{qop}{opaque}')


async def _connect_once(config: ProxyConfig, target: Address, authorization: str | None,
                        timeout_s: float
                        ) -> tuple[int, dict[str, str], asyncio.StreamReader,
                                   asyncio.StreamWriter]:
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(config.host, config.port)
        uri = f"{target.host}:{target.port}"
        lines = [f"CONNECT {uri} HTTP/1.1", f"Host: {uri}"]
        if authorization:
            lines.append(f"Proxy-Authorization: {authorization}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        status_line = (await reader.readline()).decode("latin-1").strip()
        headers: dict[str, str] = {}
        while (line := (await reader.readline()).decode("latin-1").strip()):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    match = re.match(r"HTTP/1\.[01] (\d{3})", status_line)
    if match is None:
        writer.close()
        raise ProxyError(f"{config.host}:{config.port} is not an HTTP proxy "
                         f"(answered {status_line[:60]!r})")
    return int(match.group(1)), headers, reader, writer


async def open_tunnel(config: ProxyConfig, target: Address, *, timeout_s: float = 5.0
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP tunnel to ``target`` through the proxy (HTTP CONNECT, RFC 9110 §9.3.6)."""
    authorization = None
    if config.username is not None:
        token = base64.b64encode(f"{config.username}:{config.password or ''}".encode())
        authorization = "Basic " + token.decode()
    status, headers, reader, writer = await _connect_once(config, target, authorization,
                                                          timeout_s)
    if status in (401, 407) and config.username is not None:  # tinyproxy answers 401
        scheme, params = _challenge(headers)
        writer.close()
        if scheme == "digest":
            authorization = _digest(config, params, f"{target.host}:{target.port}")
            status, headers, reader, writer = await _connect_once(config, target,
                                                                  authorization, timeout_s)
        elif scheme == "kerberos":
            raise ProxyError("the proxy wants Kerberos, which Pinhole clients do not support "
                             "(seed: Negotiate without Kerberos); ask for Basic, Digest or NTLM")
        elif scheme in ("ntlm", "negotiate"):
            raise ProxyError(f"the proxy wants {scheme.upper()}, not supported by this client "
                             "yet; use a proxy account with Basic or Digest")
    if status == 200:
        return reader, writer
    with contextlib.suppress(OSError):
        writer.close()
    if status in (401, 407):
        raise ProxyError(f"proxy authentication failed at {config.host}:{config.port} "
                         f"({status}); check the user and password in --proxy")
    raise ProxyError(f"proxy {config.host}:{config.port} refused CONNECT to "
                     f"{target.host}:{target.port} ({status}); the proxy must allow CONNECT "
                     "to port 443")
