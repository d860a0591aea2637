"""An HTTP proxy's CONNECT tunnel (RFC 9110 §9.3.6), its authentication, and a loopback shim.

One way for every Pinhole program to go through an enterprise's explicit proxy: the
client's signalling and proxy media, the hybrid node's signalling. Proxy authentication:
Basic (RFC 7617), Digest (RFC 7616, MD5 and SHA-256, qop=auth), NTLM and Negotiate
(RFC 4559, through ``pyspnego``, NTLM inside: the seed's desktop app supports "NTLM,
Negotiate" but not Kerberos, which is refused with a clear message). NTLM authenticates
the connection, so its three legs run on one kept-alive connection. The first CONNECT
carries no credentials: the proxy's challenge picks the scheme. Finding the proxy (PAC,
WPAD, the environment's) is the client's (``client.proxy``).
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
    """The proxy refused or could not be used; the message says what to do (the client's
    ``client.errors.ProxyError`` is this one too)."""


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> ProxyConfig:
        parts = urlsplit(url if "://" in url else "http://" + url)
        try:
            port = parts.port
        except ValueError:  # "host:notaport": a clear message, not urllib's
            port = -1
        if parts.scheme != "http" or not parts.hostname or port == -1:
            raise ProxyError(f"proxy URL {url!r}: use http://[user:password@]host:port")
        return cls(parts.hostname, port or 3128,
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None)

    @property
    def url(self) -> str:
        """For aiohttp's ``proxy=`` (credentials included, for Basic)."""
        creds = f"{self.username}:{self.password}@" if self.username else ""
        return f"http://{creds}{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"ProxyConfig({self.host}:{self.port}, user={self.username!r}, password=<hidden>)"


_PREFERENCE = ("negotiate", "ntlm", "digest", "basic")


def _challenge(headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The strongest scheme the proxy offers, and its parameters."""
    values = (headers.get("proxy-authenticate") or headers.get("www-authenticate", ""))
    offered: dict[str, str] = {}
    for value in values.split("\n"):
        scheme, _, rest = value.strip().partition(" ")
        offered.setdefault(scheme.lower(), rest)
    for scheme in _PREFERENCE:
        if scheme in offered:
            return scheme, dict(re.findall(r'(\w+)="?([^",]*)"?', offered[scheme]))
    scheme = next(iter(offered), "")
    return scheme, {}


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
                        timeout_s: float,
                        stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None,
                        ) -> tuple[int, dict[str, str], asyncio.StreamReader,
                                   asyncio.StreamWriter]:
    async with asyncio.timeout(timeout_s):
        if stream is None:
            try:
                reader, writer = await asyncio.open_connection(config.host, config.port)
            except OSError as exc:  # "[Errno 111]" alone names neither the proxy nor a cure
                why = (exc.strerror or str(exc) or type(exc).__name__).lower()
                raise ProxyError(f"cannot reach the proxy at {config.host}:{config.port} "
                                 f"({why})") from None
        else:
            reader, writer = stream
        uri = f"{target.host}:{target.port}"
        lines = [f"CONNECT {uri} HTTP/1.1", f"Host: {uri}"]
        if authorization:
            lines.append(f"Proxy-Authorization: {authorization}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        status_line = (await reader.readline()).decode("latin-1").strip()
        headers: dict[str, str] = {}
        while (line := (await reader.readline()).decode("latin-1").strip()):
            name, _, value = line.partition(":")
            key = name.strip().lower()
            # several challenges may come, one header each: keep them all, one per line
            headers[key] = (headers[key] + "\n" + value.strip()) if key in headers \
                else value.strip()
        match = re.match(r"HTTP/1\.[01] (\d{3})", status_line)
        if match is None:
            writer.close()
            raise ProxyError(f"{config.host}:{config.port} is not an HTTP proxy "
                             f"(answered {status_line[:60]!r})")
        status = int(match.group(1))
        if status != 200 and headers.get("content-length", "").isdigit():
            await reader.readexactly(int(headers["content-length"]))  # keep the connection
    return status, headers, reader, writer


async def _spnego(config: ProxyConfig, target: Address, scheme: str, timeout_s: float
                  ) -> tuple[int, dict[str, str], asyncio.StreamReader, asyncio.StreamWriter]:
    """NTLM or Negotiate (NTLM inside, no Kerberos) on one connection: type 1, 2, 3."""
    import spnego  # imported here: only proxy users need it

    protocol = "ntlm" if scheme == "ntlm" else "negotiate"
    label = "NTLM" if scheme == "ntlm" else "Negotiate"
    # use_ntlm: pyspnego's own NTLM inside Negotiate, never a Kerberos ticket (seed)
    context = spnego.client(config.username, config.password, hostname=config.host,
                            protocol=protocol, options=spnego.NegotiateOptions.use_ntlm)
    token = context.step()
    status, headers, reader, writer = await _connect_once(
        config, target, f"{label} {base64.b64encode(token or b'').decode()}", timeout_s)
    if status not in (401, 407):
        return status, headers, reader, writer
    _, _, challenge = (headers.get("proxy-authenticate") or "").partition(" ")
    if not challenge:
        return status, headers, reader, writer
    answer = context.step(base64.b64decode(challenge))
    return await _connect_once(
        config, target, f"{label} {base64.b64encode(answer or b'').decode()}", timeout_s,
        stream=(reader, writer))


async def open_tunnel(config: ProxyConfig, target: Address, *, timeout_s: float = 5.0
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP tunnel to ``target`` through the proxy (HTTP CONNECT, RFC 9110 §9.3.6).

    The first CONNECT carries no credentials: the proxy's challenge picks the
    scheme, so a password is never sent in the clear to a proxy that asked
    for something stronger.
    """
    status, headers, reader, writer = await _connect_once(config, target, None, timeout_s)
    if status in (401, 407) and config.username is not None:  # tinyproxy answers 401
        scheme, params = _challenge(headers)
        writer.close()
        if scheme == "basic":
            token = base64.b64encode(f"{config.username}:{config.password or ''}".encode())
            status, headers, reader, writer = await _connect_once(
                config, target, "Basic " + token.decode(), timeout_s)
        elif scheme == "digest":
            authorization = _digest(config, params, f"{target.host}:{target.port}")
            status, headers, reader, writer = await _connect_once(config, target,
                                                                  authorization, timeout_s)
        elif scheme in ("ntlm", "negotiate"):
            status, headers, reader, writer = await _spnego(config, target, scheme, timeout_s)
        elif scheme == "kerberos":
            raise ProxyError("the proxy wants Kerberos, which Pinhole clients do not support "
                             "(seed: Negotiate without Kerberos); ask for Basic, Digest or NTLM")
        else:
            raise ProxyError(f"the proxy asks for {scheme or 'an unknown'} authentication; "
                             "Pinhole speaks Basic, Digest, NTLM and Negotiate")
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


class LocalTunnelProxy:
    """A loopback HTTP CONNECT endpoint that opens each tunnel through the real proxy.

    aiohttp authenticates to proxies with Basic only. Signaling goes to this
    shim instead (no credentials on loopback), and every tunnel it opens
    upstream goes through :func:`open_tunnel`: challenge first, then Basic,
    Digest, NTLM or Negotiate as the proxy asks.
    """

    def __init__(self, upstream: ProxyConfig) -> None:
        self.upstream = upstream
        self._server: asyncio.Server | None = None
        self.port = 0
        self.last_error: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> LocalTunnelProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = (await reader.readline()).decode("latin-1").split()
            while (await reader.readline()).strip():
                pass  # headers of the local CONNECT: nothing in them matters
            if len(request) < 2 or request[0] != "CONNECT":
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            host, _, port = request[1].rpartition(":")
            try:
                up_reader, up_writer = await open_tunnel(
                    self.upstream, Address(host.strip("[]"), int(port)))
            except (ProxyError, OSError, TimeoutError, ValueError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                reason = self.last_error.replace("\r", " ").replace("\n", " ")[:200]
                writer.write(f"HTTP/1.1 502 {reason}\r\nContent-Length: 0\r\n\r\n".encode())
                return
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            with contextlib.suppress(OSError):
                writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()
