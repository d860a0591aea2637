"""Media through an HTTP proxy: ``CONNECT node:443``, then TLS, then RFC 4571 framing.

Seed: the app "sends the signaling and media through the HTTP proxy" when
nothing else gets out; the proxy must allow CONNECT to port 443. Finding the
proxy is here (explicit, the environment's, PAC, WPAD); the CONNECT tunnel, its
authentication (Basic, Digest, NTLM, Negotiate) and the loopback shim are
:mod:`edge.http_proxy`, which the hybrid node's signalling uses too; their
failures reach the client's callers as its :class:`ProxyError`.
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlsplit

from client.errors import ProxyError as ProxyError
from edge import http_proxy
from edge.http_proxy import LocalTunnelProxy as LocalTunnelProxy
from edge.http_proxy import ProxyConfig as ProxyConfig
from wire.address import Address
from wire.transports import DeviceProfile, ProxyDiscovery, check_proxy


def proxy_config(url: str) -> ProxyConfig:
    """``http://[user:password@]host:port`` as a :class:`ProxyConfig`; :class:`ProxyError`
    saying how to write it."""
    try:
        return ProxyConfig.from_url(url)
    except http_proxy.ProxyError as exc:
        raise ProxyError(str(exc)) from None


def proxy_from_environment(target_host: str) -> ProxyConfig | None:
    """``HTTPS_PROXY`` (or ``https_proxy``) unless ``NO_PROXY`` names the host."""
    url = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if not url:
        return None
    no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
    for entry in (e.strip().lstrip(".") for e in no_proxy.split(",") if e.strip()):
        if entry == "*" or target_host == entry or target_host.endswith("." + entry):
            return None
    return proxy_config(url)


async def open_tunnel(config: ProxyConfig, target: Address, *, timeout_s: float = 5.0
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP tunnel to ``target`` through the proxy (:func:`edge.http_proxy.open_tunnel`);
    its failures are the client's :class:`ProxyError`."""
    try:
        return await http_proxy.open_tunnel(config, target, timeout_s=timeout_s)
    except http_proxy.ProxyError as exc:
        raise ProxyError(str(exc)) from None


def proxy_from_pac(pac_text: str, url: str, host: str,
                   credentials: tuple[str, str] | None = None) -> ProxyConfig | None:
    """The first ``PROXY`` a PAC file's ``FindProxyForURL`` gives for ``url`` (pypac)."""
    from pypac.parser import PACFile  # only desktop devices with a PAC file need it

    answer = str(PACFile(pac_text).find_proxy_for_url(url, host))
    for choice in (c.strip() for c in answer.split(";")):
        kind, _, where = choice.partition(" ")
        if kind.upper() in ("PROXY", "HTTP") and where:
            proxy = proxy_config("http://" + where.strip())
            if credentials:
                proxy = ProxyConfig(proxy.host, proxy.port, *credentials)
            return proxy
        if kind.upper() == "DIRECT":
            return None
    return None


def wpad_candidates(fqdn: str) -> list[str]:
    """WPAD by DNS: ``http://wpad.<domain>/wpad.dat`` for each parent domain of this host,
    longest first, never a bare top-level domain."""
    labels = [label for label in fqdn.strip(".").split(".") if label]
    return [f"http://wpad.{'.'.join(labels[i:])}/wpad.dat" for i in range(1, len(labels) - 1)]


async def fetch_pac(url: str, timeout_s: float = 5.0) -> str:
    """Download a PAC file (plain HTTP, as WPAD serves it)."""
    import aiohttp  # the edge: sockets live here, not in wire/

    try:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as response:
            if response.status != 200:
                raise ProxyError(f"PAC file {url}: HTTP {response.status}")
            return await response.text()
    except aiohttp.ClientConnectorError as exc:
        why = os.strerror(exc.os_error.errno) if exc.os_error.errno else str(exc.os_error)
        raise ProxyError(f"cannot fetch the PAC file {url}: cannot reach {exc.host}:{exc.port} "
                         f"({why.lower()}); check --pac-url, or set --proxy explicitly"
                         ) from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ProxyError(f"cannot fetch the PAC file {url}: {exc or type(exc).__name__}; "
                         "check --pac-url, or set --proxy explicitly") from None


async def discover_proxy(
    target_url: str,
    profile: DeviceProfile,
    *,
    explicit: str | None = None,
    pac_url: str | None = None,
    wpad_host: str | None = None,
    credentials: tuple[str, str] | None = None,
) -> tuple[ProxyConfig | None, ProxyDiscovery | None]:
    """The proxy for ``target_url``: explicit, else environment, else PAC (URL or WPAD).

    The device profile decides which discovery it may use (seed: only the
    desktop app does PAC/WPAD; mobile and hardware devices need it set by hand).
    """
    host = urlsplit(target_url).hostname or ""
    if explicit:
        check_proxy(profile, ProxyDiscovery.EXPLICIT, None)
        return proxy_config(explicit), ProxyDiscovery.EXPLICIT
    from_env = proxy_from_environment(host)
    if from_env is not None:
        check_proxy(profile, ProxyDiscovery.ENVIRONMENT, None)
        return from_env, ProxyDiscovery.ENVIRONMENT
    urls = [pac_url] if pac_url else wpad_candidates(wpad_host) if wpad_host else []
    if not urls:
        return None, None
    check_proxy(profile, ProxyDiscovery.PAC, None)
    last: ProxyError | None = None
    for url in urls:
        try:
            text = await fetch_pac(url)
        except ProxyError as exc:
            last = exc
            continue
        return proxy_from_pac(text, target_url, host, credentials), ProxyDiscovery.PAC
    if pac_url and last is not None:
        raise last
    return None, None
