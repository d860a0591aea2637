"""``pinhole netcheck``: the first thing an administrator runs, and what it tells them.

Every check is a row: the cloud (DNS, TCP, TLS and whether something inspects it, HTTPS,
WSS), the HTTP proxy (how it was found, whether it lets the client through), each media node
on each rung of the ladder, and the UDP idle timeout where it can be measured. The media rows
run even when signaling fails, on the node list of the last registration. Then a verdict and
its exit status — 0 all good, 6 degraded (media on a fallback rung), 4 no media path, 3 no
signaling, as everywhere in the CLI — and the rules to open, in the seeds' order
(:mod:`client.firewall_rules`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509
from websockets.exceptions import WebSocketException

from client import firewall_rules
from client.api import ApiError, CloudApi
from client.cache import NodeListCache
from client.device import Device
from client.firewall_rules import Rule
from client.inspection import inspection_findings
from client.probe import ProbeOutcome, probe, targets
from client.proxy import LocalTunnelProxy, ProxyConfig, ProxyError, discover_proxy, open_tunnel
from client.udp_idle import measure_udp_idle
from edge.boundary import ExitCode
from wire.address import Address
from wire.errors import ProfileRefused
from wire.models import DeviceRegistration, NodeInfo
from wire.tls import check_pins, client_context
from wire.transports import (
    PROFILES,
    RUNGS_BY_NAME,
    DeviceProfile,
    RungName,
    Transport,
    allowed_rungs,
)

#: Rungs on which media is as good as it gets (the seeds' recommended UDP ports).
BEST_RUNGS = frozenset({RungName.UDP_5004, RungName.UDP_9000})
CONNECT_TIMEOUT_S = 3.0
SIGNALING_TIMEOUT_S = 8.0


class Status(enum.StrEnum):
    OK = "ok"
    BLOCKED = "blocked"  # something stopped it: a firewall, a proxy, an inspecting box
    WARNING = "warning"  # works, but worse than it should
    SKIPPED = "skipped"  # not tried: what it needs failed first, or not measurable here


class Verdict(enum.IntEnum):
    """The exit status of ``pinhole netcheck``: on the CLI's one scale
    (:class:`edge.boundary.ExitCode`), so that no verdict reads as a usage error (2) or
    another failure (1), and "no media" is 4 wherever the CLI says it."""

    GOOD = ExitCode.OK
    DEGRADED = ExitCode.DEGRADED  # media only on a fallback rung, or notifications blocked
    NO_MEDIA = ExitCode.NO_MEDIA
    NO_SIGNALING = ExitCode.NO_CLOUD


VERDICT_TEXT: dict[Verdict, str] = {
    Verdict.GOOD: "all good: media can use UDP, the best path",
    Verdict.DEGRADED: "degraded: meetings work, but not on the best path",
    Verdict.NO_MEDIA: "no media path: signaling works, but no media node can be reached",
    Verdict.NO_SIGNALING: "no signaling: this device cannot reach the cloud, so no meeting",
}


@dataclass(frozen=True, slots=True)
class Check:
    """One row of the report."""

    section: str  # "cloud", "proxy", "media", "network"
    name: str
    target: str
    status: Status
    detail: str = ""
    ms: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {"section": self.section, "check": self.name, "target": self.target,
                "status": self.status.value, "detail": self.detail,
                "ms": None if self.ms is None else round(self.ms, 1)}


@dataclass(frozen=True, slots=True)
class Report:
    checks: tuple[Check, ...]
    verdict: Verdict
    media_rung: RungName | None
    rules: tuple[Rule, ...]
    hints: tuple[str, ...] = ()
    udp_idle: dict[str, object] | None = None  # client.udp_idle's finding, when measured

    def as_dict(self) -> dict[str, object]:
        return {
            "verdict": {"exit_status": int(self.verdict), "name": self.verdict.name.lower(),
                        "text": VERDICT_TEXT[self.verdict]},
            "media_transport": self.media_rung,
            "hints": list(self.hints),
            # every TLS inspection seen, of the cloud or of media nodes, in the words that
            # name it
            "inspection": [c.detail for c in self.checks
                           if c.name == "TLS inspection" and c.status is Status.BLOCKED]
            + [c.detail.removeprefix("registration: ") for c in self.checks
               if c.name == "HTTPS" and "TLS inspection" in c.detail],
            **({"udp_idle": self.udp_idle} if self.udp_idle is not None else {}),
            "checks": [c.as_dict() for c in self.checks],
            "rules": [{"for": r.key, "text": r.text, "protocol": r.protocol or None,
                       "port": r.port, "to": list(r.to), "recommended": r.recommended}
                      for r in self.rules],
        }


@dataclass(frozen=True, slots=True)
class Settings:
    cloud: str
    org: str
    enrollment_key: str
    ca: str | None = None
    pins: tuple[str, ...] = ()  # the cloud's SPKI pins from the enrollment material
    name: str = "netcheck"
    device_id: str | None = None
    profile: DeviceProfile = DeviceProfile.DESKTOP
    proxy: str | None = None
    pac_url: str | None = None
    wpad_host: str | None = None
    proxy_credentials: tuple[str, str] | None = None
    cache_dir: Path | None = None
    udp_idle_s: float = 0.0  # > 0: measure the UDP idle timeout for this long


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def _error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer (timed out)"
    return str(exc) or type(exc).__name__


# ------------------------------------------------------------------- the verdict, pure

def media_outcome(outcomes: Iterable[ProbeOutcome], profile: DeviceProfile
                  ) -> RungName | None:
    """The rung media would use: the best rung of the ladder that reached some node."""
    working = {o.target.rung for o in outcomes if o.rtt_ms is not None}
    for rung in allowed_rungs(profile, legacy_dc=True):
        if rung.name in working:
            return rung.name
    return None


def assess(checks: Sequence[Check], outcomes: Sequence[ProbeOutcome], profile: DeviceProfile,
           *, cloud_host: str, cloud_addresses: Sequence[str], cloud_port: int,
           nodes: Sequence[NodeInfo]) -> Report:
    """The verdict and the rules to open, from the rows and the probe outcomes."""
    status = {c.name: c.status for c in checks if c.section == "cloud"}
    signaling = status.get("HTTPS") is Status.OK
    media = media_outcome(outcomes, profile)
    if not signaling:
        verdict = Verdict.NO_SIGNALING
    elif media is None:
        verdict = Verdict.NO_MEDIA
    elif media not in BEST_RUNGS or status.get("WSS") is not Status.OK:
        verdict = Verdict.DEGRADED
    else:
        verdict = Verdict.GOOD
    rules: list[Rule] = []
    if not signaling:
        rules.append(firewall_rules.signaling(cloud_host, cloud_addresses, cloud_port))
    elif status.get("WSS") is not Status.OK:
        rules.append(firewall_rules.websocket(cloud_host, cloud_port))
    inspected = any((c.name == "TLS inspection" and c.status is Status.BLOCKED)
                    or (c.name == "HTTPS" and "TLS inspection" in c.detail) for c in checks)
    inspected = inspected or any(o.error and "TLS inspection" in o.error for o in outcomes)
    by_rung: dict[RungName, list[ProbeOutcome]] = {}
    for outcome in outcomes:
        by_rung.setdefault(outcome.target.rung, []).append(outcome)
    for rung in allowed_rungs(profile, legacy_dc=True):
        results = by_rung.get(rung.name)
        if not results or rung.transport is Transport.HTTP_PROXY:
            continue
        if media in BEST_RUNGS and rung.name is not RungName.UDP_5004:
            break  # the best path works: nothing else to open
        blocked = sorted({o.target.address.host for o in results if o.rtt_ms is None})
        if blocked and len(blocked) == len({o.target.address.host for o in results}):
            rules.append(firewall_rules.media(rung.name, blocked,
                                              results[0].target.address.port))
    if inspected:
        rules.append(firewall_rules.inspection([cloud_host, *sorted(n.address for n in nodes)]))
    recommended = [r for r in rules if r.recommended]
    hints = []
    proxied = any(c.section == "proxy" and c.name == "CONNECT" for c in checks)
    if not signaling and not proxied:
        hints.append("if this network lets only an HTTP proxy out, run again with --proxy "
                     "http://HOST:PORT (or set HTTPS_PROXY, or give --pac-url)")
    if media is RungName.HTTP_PROXY:
        hints.append("media goes through the HTTP proxy: it works, with more delay than any "
                     "other path")
    return Report(tuple(checks), verdict, media,
                  tuple(recommended + [r for r in rules if not r.recommended]), tuple(hints))


# ------------------------------------------------------------------- the checks, on the network

@dataclass
class Netcheck:
    """Runs the checks in order; ``progress`` gets a line as each one starts or ends."""

    settings: Settings
    progress: Callable[[str], None] = lambda line: None
    checks: list[Check] = field(default_factory=list)
    udp_idle: dict[str, object] | None = None

    def _row(self, check: Check, *, quiet: bool = False) -> Check:
        self.checks.append(check)
        if quiet:
            return check
        detail = f" ({check.detail})" if check.detail else ""
        self.progress(f"{check.section:7} {check.name}: {check.status.value}{detail}")
        return check

    async def run(self) -> Report:
        s = self.settings
        url = urlsplit(s.cloud)
        host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
        proxy = await self._proxy_discovery(s)
        addresses = await self._dns(host, port)
        direct = await self._tcp(host, port, addresses, proxied=proxy is not None)
        through = proxy is not None and await self._proxy_connect(proxy, host, port)
        reachable = direct or through
        await self._tls(host, port, proxy if through and not direct else None, reachable)
        nodes = await self._signaling(s, proxy, reachable)
        outcomes = await self._probe(nodes, proxy)
        for finding in inspection_findings(outcomes):
            self._row(Check("media", "TLS inspection", "media nodes", Status.BLOCKED, finding))
        await self._udp_idle(s, proxy, registered=bool(nodes) and reachable)
        report = assess(self.checks, outcomes, s.profile, cloud_host=host,
                        cloud_addresses=addresses, cloud_port=port, nodes=nodes)
        return dataclasses.replace(report, udp_idle=self.udp_idle)

    async def _proxy_discovery(self, s: Settings) -> ProxyConfig | None:
        try:
            proxy, how = await discover_proxy(
                s.cloud, s.profile, explicit=s.proxy, pac_url=s.pac_url, wpad_host=s.wpad_host,
                credentials=s.proxy_credentials)
        except (ProxyError, ProfileRefused) as exc:
            self._row(Check("proxy", "discovery", s.pac_url or s.proxy or "", Status.BLOCKED,
                            str(exc)))
            return None
        if proxy is None:
            self._row(Check("proxy", "discovery", "", Status.OK,
                            "no proxy configured: connecting directly"))
        else:
            self._row(Check("proxy", "discovery", f"{proxy.host}:{proxy.port}", Status.OK,
                            f"from {how.value if how else 'settings'}"))
        return proxy

    async def _dns(self, host: str, port: int) -> list[str]:
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(host)
            self._row(Check("cloud", "DNS", host, Status.OK, "an address: no lookup needed"))
            return [host]
        start = time.perf_counter()
        try:
            infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            self._row(Check("cloud", "DNS", host, Status.BLOCKED, _error(exc), _ms(start)))
            return []
        found = sorted({str(info[4][0]) for info in infos})
        self._row(Check("cloud", "DNS", host, Status.OK, ", ".join(found), _ms(start)))
        return found

    async def _tcp(self, host: str, port: int, addresses: list[str], *, proxied: bool) -> bool:
        target = f"{host}:{port}"
        if not addresses:
            self._row(Check("cloud", "TCP", target, Status.SKIPPED, "no address"))
            return False
        self.progress(f"connecting to {target} …")
        start = time.perf_counter()
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(addresses[0], port),
                                               CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            detail = _error(exc) + ("; expected when only the proxy may connect out"
                                    if proxied else "")
            self._row(Check("cloud", "TCP", target, Status.WARNING if proxied else Status.BLOCKED,
                            detail, _ms(start)))
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        self._row(Check("cloud", "TCP", target, Status.OK, "direct", _ms(start)))
        return True

    async def _proxy_connect(self, proxy: ProxyConfig, host: str, port: int) -> bool:
        """Proxy authentication and policy: does it CONNECT to the cloud's port?"""
        start = time.perf_counter()
        try:
            _, writer = await open_tunnel(proxy, Address(host, port), timeout_s=CONNECT_TIMEOUT_S)
        except (ProxyError, OSError, TimeoutError) as exc:
            self._row(Check("proxy", "CONNECT", f"{host}:{port}", Status.BLOCKED, _error(exc),
                            _ms(start)))
            return False
        writer.close()
        auth = "authenticated" if proxy.username else "no authentication asked"
        self._row(Check("proxy", "CONNECT", f"{host}:{port}", Status.OK, auth, _ms(start)))
        return True

    async def _tls(self, host: str, port: int, proxy: ProxyConfig | None, reachable: bool) -> None:
        target = f"{host}:{port}"
        if not reachable:
            self._row(Check("cloud", "TLS", target, Status.SKIPPED, "no connection"))
            self._row(Check("cloud", "TLS inspection", target, Status.SKIPPED, "no connection"))
            return
        start = time.perf_counter()
        try:
            der = await self._handshake(host, port, proxy, client_context(self.settings.ca))
        except ssl.SSLCertVerificationError as exc:
            elapsed = _ms(start)
            issuer = await self._issuer(host, port, proxy)
            self._row(Check("cloud", "TLS", target, Status.BLOCKED, exc.verify_message, elapsed))
            self._row(Check("cloud", "TLS inspection", target, Status.BLOCKED,
                            f"the certificate is issued by {issuer}, not by the cloud's CA: a "
                            "TLS-inspecting proxy or firewall re-signs this connection"))
            return
        except (OSError, ssl.SSLError, ProxyError, TimeoutError) as exc:
            self._row(Check("cloud", "TLS", target, Status.BLOCKED, _error(exc), _ms(start)))
            self._row(Check("cloud", "TLS inspection", target, Status.SKIPPED, "no handshake"))
            return
        self._row(Check("cloud", "TLS", target, Status.OK,
                        "through the proxy" if proxy else "certificate verified", _ms(start)))
        pins = self.settings.pins
        if not check_pins(der, pins).matched:
            self._row(Check("cloud", "TLS inspection", target, Status.BLOCKED,
                            "the certificate's key is not a pinned one: something re-signs "
                            "this connection"))
        else:
            self._row(Check("cloud", "TLS inspection", target, Status.OK,
                            "the cloud's own certificate" + (" (pin matches)" if pins else "")))

    async def _handshake(self, host: str, port: int, proxy: ProxyConfig | None,
                         context: ssl.SSLContext) -> bytes:
        async with asyncio.timeout(CONNECT_TIMEOUT_S * 2):
            if proxy is not None:
                _, writer = await open_tunnel(proxy, Address(host, port),
                                              timeout_s=CONNECT_TIMEOUT_S)
                await writer.start_tls(context, server_hostname=host)
            else:
                _, writer = await asyncio.open_connection(host, port, ssl=context,
                                                          server_hostname=host)
        try:
            return bytes(writer.get_extra_info("ssl_object").getpeercert(binary_form=True))
        finally:
            writer.close()

    async def _issuer(self, host: str, port: int, proxy: ProxyConfig | None) -> str:
        unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        try:
            der = await self._handshake(host, port, proxy, unverified)
            return repr(x509.load_der_x509_certificate(der).issuer.rfc4514_string())
        except (OSError, ssl.SSLError, ProxyError, TimeoutError, ValueError):
            return "an unknown issuer"

    async def _signaling(self, s: Settings, proxy: ProxyConfig | None,
                         reachable: bool) -> list[NodeInfo]:
        """Registration (HTTPS) and notifications (WSS); the node list, else the cached one."""
        cache = NodeListCache(s.cache_dir) if s.cache_dir else None
        nodes: list[NodeInfo] = []
        registered = False
        target = urlsplit(s.cloud).netloc
        if not reachable:
            self._row(Check("cloud", "HTTPS", target, Status.SKIPPED, "no connection"))
            self._row(Check("cloud", "WSS", target, Status.SKIPPED, "no connection"))
        else:
            shim = await LocalTunnelProxy(proxy).start() if proxy else None
            api = CloudApi(s.cloud, client_context(s.ca), proxy=shim.url if shim else None,
                           pins=s.pins)
            try:
                start = time.perf_counter()
                body: dict[str, str] = {"org": s.org, "enrollment_key": s.enrollment_key,
                                        "name": s.name, "profile": s.profile.value}
                if s.device_id:
                    body["device_id"] = s.device_id
                try:
                    reg = await asyncio.wait_for(
                        api.register(DeviceRegistration.model_validate(body)),
                        SIGNALING_TIMEOUT_S)
                except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                    self._row(Check("cloud", "HTTPS", target, Status.BLOCKED,
                                    "registration: " + _error(exc), _ms(start)))
                    self._row(Check("cloud", "WSS", target, Status.SKIPPED, "not registered"))
                else:
                    registered, nodes = True, list(reg.nodes)
                    self._row(Check("cloud", "HTTPS", target, Status.OK,
                                    f"registered; {len(nodes)} media nodes", _ms(start)))
                    if cache is not None:
                        with contextlib.suppress(OSError):
                            cache.store(s.cloud, s.org, nodes)
                    start = time.perf_counter()
                    try:
                        await asyncio.wait_for(api.check_events(), SIGNALING_TIMEOUT_S)
                    except (aiohttp.ClientError, WebSocketException, OSError,
                            TimeoutError) as exc:
                        self._row(Check("cloud", "WSS", target, Status.BLOCKED, _error(exc),
                                        _ms(start)))
                    else:
                        self._row(Check("cloud", "WSS", target, Status.OK,
                                        "notifications connect", _ms(start)))
            finally:
                await api.close()
                if shim is not None:
                    await shim.close()
        if not registered:
            cached = cache.load(s.cloud, s.org) if cache is not None else None
            if cached is None:
                self._row(Check("media", "node list", "", Status.SKIPPED,
                                "none: this device never registered from here, so there is "
                                "no node list to probe"))
            else:
                nodes, age = cached
                self._row(Check("media", "node list", "", Status.WARNING,
                                f"{len(nodes)} nodes from the last registration, "
                                f"{_age(age)} ago"))
        return nodes

    async def _udp_idle(self, s: Settings, proxy: ProxyConfig | None, *,
                        registered: bool) -> None:
        """How long the firewall keeps a listener's UDP pinhole (``--udp-idle-s``): a scratch
        meeting with a listener leg that sends nothing and a talker leg
        (:mod:`client.udp_idle`)."""
        if s.udp_idle_s <= 0 or not registered:
            why = ("not measured (pass --udp-idle-s 20 to measure)" if s.udp_idle_s <= 0
                   else "not measured: it needs signaling to the cloud")
            self._row(Check("network", "UDP idle timeout", "", Status.SKIPPED, why))
            return
        self.progress(f"measuring the UDP idle timeout for {s.udp_idle_s:g} s …")
        shim = await LocalTunnelProxy(proxy).start() if proxy else None
        api = CloudApi(s.cloud, client_context(s.ca), proxy=shim.url if shim else None,
                       pins=s.pins)
        try:
            device = Device(api, s.profile, proxy=proxy)
            await device.register(s.org, s.enrollment_key, s.name + "-udp-idle")
            await device.discover(force=True)
            found = await measure_udp_idle(device, s.udp_idle_s)
            self.udp_idle = found.as_dict()
            await device.close()
        except (ApiError, aiohttp.ClientError, WebSocketException, OSError, TimeoutError,
                ValueError) as exc:
            self._row(Check("network", "UDP idle timeout", "", Status.SKIPPED,
                            "not measured: " + _error(exc)))
            return
        finally:
            await api.close()
            if shim is not None:
                await shim.close()
        if found.rung is None or RUNGS_BY_NAME[found.rung].transport is not Transport.UDP:
            self._row(Check("network", "UDP idle timeout", found.rung or "", Status.SKIPPED,
                            "not measurable: media did not use UDP"))
        elif found.closed_after_s is None:
            self._row(Check("network", "UDP idle timeout", found.rung, Status.OK,
                            f"a listener's pinhole outlived the {found.window_s:g} s window"))
        else:
            self._row(Check("network", "UDP idle timeout", found.rung,
                            Status.WARNING if found.looks_short else Status.OK,
                            found.advice() or f"closed after {found.closed_after_s:g} s"))

    async def _probe(self, nodes: list[NodeInfo], proxy: ProxyConfig | None
                     ) -> list[ProbeOutcome]:
        if not nodes:
            return []
        media = PROFILES[self.settings.profile].media
        transports: list[Transport] = [t for t in media if t is not Transport.HTTP_PROXY]
        if proxy is not None and Transport.HTTP_PROXY in media:
            transports.append(Transport.HTTP_PROXY)
        all_targets = targets(nodes, transports)
        self.progress(f"probing {len(nodes)} media nodes: {len(all_targets)} endpoints …")
        def probed(done: int, total: int, o: ProbeOutcome) -> None:
            result = "ok" if o.rtt_ms is not None else (o.error or "no answer")
            self.progress(f"probed {done}/{total}: {o.target.node_id} {o.target.rung} {result}")

        outcomes = await probe(all_targets, timeout_ms=1000, proxy=proxy, progress=probed)
        order = {r.name: i for i, r in enumerate(allowed_rungs(self.settings.profile,
                                                                legacy_dc=True))}
        for o in sorted(outcomes, key=lambda o: (order.get(o.target.rung, 99), o.target.node_id)):
            where = f"{o.target.address.host}:{o.target.address.port}"
            if o.rtt_ms is not None:
                self._row(Check("media", f"{o.target.node_id} {o.target.rung}", where, Status.OK,
                                f"mapped {o.mapped}" if o.mapped else "", o.rtt_ms), quiet=True)
            else:
                self._row(Check("media", f"{o.target.node_id} {o.target.rung}", where,
                                Status.BLOCKED, o.error or "no answer"), quiet=True)
        return outcomes


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def table(report: Report) -> list[str]:
    """The report as aligned text rows (for a terminal)."""
    rows = [(c.section, c.name, c.target or "—", c.status.value.upper()
             if c.status is Status.BLOCKED else c.status.value,
             "—" if c.ms is None else f"{c.ms:.1f}", c.detail) for c in report.checks]
    head = ("section", "check", "target", "status", "ms", "detail")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    return ["  ".join(v.ljust(w) for v, w in zip(r[:5], widths, strict=True)) + "  " + r[5]
            for r in [head, *rows]]
