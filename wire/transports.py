"""The media transport ladder and the device-profile table.

Both tables are kept here once; every row cites the seed sentence it comes
from (the seeds docs/design.md names: the *Firewall Traversal* white paper, "WP", and the
*Firewall and Network Requirements* page, "FNR").  Refusals are
:class:`~wire.errors.ProfileRefused` with a message a person can act on.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from wire.errors import ProfileRefused


class Transport(enum.StrEnum):
    """How media packets travel between a client and a node."""

    UDP = "udp"
    TCP = "tcp"  # RFC 4571 framing
    TLS = "tls"  # RFC 4571 framing inside TLS
    HTTP_PROXY = "http-proxy"  # HTTP CONNECT node:443, then TLS, then RFC 4571


class RungName(enum.StrEnum):
    """A rung of the media transport ladder, by the name the API, the logs and the console use."""

    UDP_5004 = "udp/5004"
    UDP_9000 = "udp/9000"
    UDP_33434 = "udp/33434"
    TCP_5004 = "tcp/5004"
    TCP_33434 = "tcp/33434"
    TLS_443 = "tls/443"
    HTTP_PROXY = "http-proxy"


@dataclass(frozen=True, slots=True)
class Rung:
    """One step of the ladder: a canonical name, its transport and default port."""

    name: RungName
    transport: Transport
    default_port: int
    legacy_dc_only: bool
    seed: str
    extra_penalty_ms: float = 0.0  # on top of the transport's

    @property
    def penalty_ms(self) -> float:
        """Assignment penalty for media on this rung (udp < tcp < tls < proxy)."""
        return TRANSPORT_PENALTY_MS[self.transport] + self.extra_penalty_ms


UDP_5004: Final = Rung(
    RungName.UDP_5004,
    Transport.UDP,
    5004,
    False,
    "WP: 'we recommend that your firewall allows inside-initiated UDP connections to port 5004'",
)
UDP_9000: Final = Rung(
    RungName.UDP_9000,
    Transport.UDP,
    9000,
    True,
    "WP: 'media nodes that operate in the Cisco WebEx data center IP ranges also listen on "
    "UDP port 9000'",
)
UDP_33434: Final = Rung(
    RungName.UDP_33434,
    Transport.UDP,
    33434,
    False,
    "FNR: 'The Cisco Spark app uses port 33434 only when 5004 is blocked'; WP: 'it can be "
    "used as a last resort'",
    # FNR: "traffic through port 33434 may experience throttling in some ISP networks": a
    # node's udp/5004 is its best rung whenever it answered, even a little slower
    extra_penalty_ms=20.0,
)
TCP_5004: Final = Rung(
    RungName.TCP_5004,
    Transport.TCP,
    5004,
    False,
    "WP: 'it can fall back to traverse a firewall using TCP port 5004 and TLS port 443'",
)
TCP_33434: Final = Rung(
    RungName.TCP_33434,
    Transport.TCP,
    33434,
    False,
    "FNR ports table: 'Screen Sharing (in app) TCP 5004* 33434' ('*Preferred port.'); "
    "'The Cisco Spark app uses port 33434 only when 5004 is blocked'",
    extra_penalty_ms=20.0,  # FNR: "traffic through port 33434 may experience throttling"
)
TLS_443: Final = Rung(
    RungName.TLS_443,
    Transport.TLS,
    443,
    False,
    "WP: 'it can fall back to traverse a firewall using TCP port 5004 and TLS port 443'",
)
HTTP_PROXY_443: Final = Rung(
    RungName.HTTP_PROXY,
    Transport.HTTP_PROXY,
    443,
    False,
    "WP: 'The Cisco Spark app also supports a media tunnel through an HTTP proxy ... when "
    "no other protocols succeed'",
)

#: The client's transport ladder, best first (docs/design.md, "Ports").
LADDER: Final[tuple[Rung, ...]] = (UDP_5004, UDP_9000, UDP_33434, TCP_5004, TLS_443, HTTP_PROXY_443)
#: The content (screen sharing) ladder, best first: stream rungs only, even when audio and
#: video are on UDP. FNR: "Cisco Spark uses TCP for messaging, file transfer, and screen
#: sharing and UDP as the preferred method for audio and video"; its ports table gives
#: "Screen Sharing (in app) TCP 5004* 33434"; and "If TCP traffic is also blocked, then
#: Cisco Spark for Windows and Mac attempts to route traffic through your organization's
#: HTTP Proxy for all services, including: ... screen sharing". TLS 443 sits between them
#: as it does on the media ladder (WP: "TCP port 5004 and TLS port 443").
CONTENT_LADDER: Final[tuple[Rung, ...]] = (TCP_5004, TCP_33434, TLS_443, HTTP_PROXY_443)
#: Every rung a node serves, best first: the media ladder, content's tcp/33434 after
#: tcp/5004 (the node's ICE-lite priorities follow this order: ``wire.ice_lite``).
NODE_RUNGS: Final[tuple[Rung, ...]] = (
    UDP_5004, UDP_9000, UDP_33434, TCP_5004, TCP_33434, TLS_443, HTTP_PROXY_443)
RUNGS_BY_NAME: Final[dict[RungName, Rung]] = {rung.name: rung for rung in NODE_RUNGS}

#: Extra milliseconds the assignment charges a transport: UDP has the lowest
#: latency (WP: "UDP is the preferred protocol for interactive media, because
#: it has lower latency"); TCP/TLS "media quality might suffer"; a proxy
#: "usually causes poor media quality".
#: The penalties are larger than the spread of RTTs between regions (10-90 ms in
#: the lab) so that a reachable UDP node wins over a nearer one reached only over
#: TCP or TLS (docs/design.md lab table: whitelist → "udp/5004 to a node in range,
#: even if farther"): under loss, TCP's retransmissions and head-of-line blocking
#: cost more than the extra distance.
TRANSPORT_PENALTY_MS: Final[dict[Transport, float]] = {
    Transport.UDP: 0.0,
    Transport.TCP: 100.0,
    Transport.TLS: 120.0,
    Transport.HTTP_PROXY: 200.0,
}


class DeviceProfile(enum.StrEnum):
    """Kinds of device, which the seeds give different transport abilities."""

    DESKTOP = "desktop"
    MOBILE = "mobile"
    ROOM = "room"
    BOARD = "board"


class ProxyDiscovery(enum.StrEnum):
    """Where a device may learn its HTTP proxy from."""

    EXPLICIT = "explicit"
    ENVIRONMENT = "environment"
    PAC = "pac"  # PAC file, also found by WPAD


class ProxyAuth(enum.StrEnum):
    BASIC = "basic"
    DIGEST = "digest"
    NTLM = "ntlm"
    NEGOTIATE = "negotiate"
    KERBEROS = "kerberos"


@dataclass(frozen=True, slots=True)
class ProfileRule:
    """What one device profile may do, and the seed sentences that say so."""

    profile: DeviceProfile
    media: frozenset[Transport]
    proxy_discovery: frozenset[ProxyDiscovery]
    proxy_auth: frozenset[ProxyAuth]
    seed: str

    @property
    def proxy_media(self) -> bool:
        return Transport.HTTP_PROXY in self.media


_ALL_AUTH_BUT_KERBEROS: Final = frozenset(
    {ProxyAuth.BASIC, ProxyAuth.DIGEST, ProxyAuth.NTLM, ProxyAuth.NEGOTIATE}
)

PROFILES: Final[dict[DeviceProfile, ProfileRule]] = {
    DeviceProfile.DESKTOP: ProfileRule(
        DeviceProfile.DESKTOP,
        frozenset(Transport),
        frozenset(ProxyDiscovery),
        _ALL_AUTH_BUT_KERBEROS,
        "FNR: 'If TCP traffic is also blocked, then Cisco Spark for Windows and Mac attempts to "
        "route traffic through your organization's HTTP Proxy'; 'Cisco Spark for Windows "
        "supports NTLM, Basic, Digest, and Negotiate proxy authentication. Kerberos is not "
        "supported.'; WP: 'WPAD is a DHCP extension that points to a proxy auto-config (PAC) "
        "file'",
    ),
    DeviceProfile.MOBILE: ProfileRule(
        DeviceProfile.MOBILE,
        frozenset({Transport.UDP, Transport.TCP}),
        frozenset({ProxyDiscovery.EXPLICIT}),
        _ALL_AUTH_BUT_KERBEROS,
        "FNR: 'The Cisco Spark app on mobile devices supports only TCP fallback.'; WP: "
        "'Because Android doesn't have this feature, you must manually configure any HTTP "
        "proxy on an Android device.'",
    ),
    DeviceProfile.ROOM: ProfileRule(
        DeviceProfile.ROOM,
        frozenset({Transport.UDP}),
        frozenset({ProxyDiscovery.EXPLICIT}),
        _ALL_AUTH_BUT_KERBEROS,
        "FNR: 'Cisco Spark Room System media does not work if UDP traffic to both port 5004 "
        "and port 33434 is blocked.'; WP: 'Hard endpoints only support sending the signaling "
        "through the HTTP proxy; there is no support for proxying media traffic.'",
    ),
    DeviceProfile.BOARD: ProfileRule(
        DeviceProfile.BOARD,
        frozenset({Transport.UDP}),
        frozenset({ProxyDiscovery.EXPLICIT}),
        _ALL_AUTH_BUT_KERBEROS,
        "WP: 'Cisco Spark Board does not support TCP/TLS fallback for media'; 'Cisco Spark "
        "Board ... do not support media through HTTP proxies'; 'you must manually make these "
        "settings on these endpoints'",
    ),
}

_TRANSPORT_WORDS: Final[dict[Transport, str]] = {
    Transport.UDP: "UDP",
    Transport.TCP: "TCP",
    Transport.TLS: "TLS",
    Transport.HTTP_PROXY: "an HTTP proxy",
}


def _plural(profile: DeviceProfile) -> str:
    return f"{profile.value} devices"


def check_media(profile: DeviceProfile, transport: Transport) -> None:
    """Raise :class:`ProfileRefused` when ``profile`` may not send media on ``transport``."""
    rule = PROFILES[profile]
    if transport in rule.media:
        return
    allowed = ", ".join(_TRANSPORT_WORDS[t] for t in Transport if t in rule.media)
    raise ProfileRefused(
        f"{_plural(profile)} cannot send media through {_TRANSPORT_WORDS[transport]}"
        f" (allowed: {allowed}); open UDP 5004 outbound, or use a desktop client"
    )


def check_proxy(profile: DeviceProfile, discovery: ProxyDiscovery, auth: ProxyAuth | None) -> None:
    """Raise :class:`ProfileRefused` when ``profile`` may not use such a proxy for signaling."""
    rule = PROFILES[profile]
    if discovery not in rule.proxy_discovery:
        raise ProfileRefused(
            f"{_plural(profile)} cannot discover a proxy by {discovery.value};"
            " configure the proxy explicitly (--proxy URL)"
        )
    if auth is ProxyAuth.KERBEROS:
        raise ProfileRefused(
            "Kerberos proxy authentication is not supported; use NTLM, Basic, Digest or"
            " Negotiate"
        )
    if auth is not None and auth not in rule.proxy_auth:
        raise ProfileRefused(f"{_plural(profile)} cannot authenticate to a proxy with {auth.value}")


def allowed_rungs(profile: DeviceProfile, *, legacy_dc: bool) -> tuple[Rung, ...]:
    """The ladder, best first, restricted to what ``profile`` allows on such a node."""
    media = PROFILES[profile].media
    return tuple(
        rung
        for rung in LADDER
        if rung.transport in media and (legacy_dc or not rung.legacy_dc_only)
    )


def plan(
    profile: DeviceProfile, offered: Iterable[str], *, legacy_dc: bool
) -> tuple[Rung, ...]:
    """Order the rung names a node offers by the ladder, keeping what ``profile`` allows.

    ``http-proxy`` is offered implicitly by every node with a ``tls/443`` rung.
    Raises :class:`ProfileRefused` when nothing is left, naming what the node offered.
    """
    names = set(offered)
    if TLS_443.name in names:
        names.add(HTTP_PROXY_443.name)
    chosen = tuple(r for r in allowed_rungs(profile, legacy_dc=legacy_dc) if r.name in names)
    if not chosen:
        offered_text = ", ".join(sorted(names)) or "nothing"
        needed = ", ".join(r.name for r in allowed_rungs(profile, legacy_dc=legacy_dc))
        raise ProfileRefused(
            f"{_plural(profile)} can use none of the node's transports ({offered_text});"
            f" {_plural(profile)} need {needed}"
        )
    return chosen


def check_content(profile: DeviceProfile) -> None:
    """Raise :class:`ProfileRefused` when ``profile`` can neither present nor receive content.

    Content travels on stream rungs only (:data:`CONTENT_LADDER`); a profile whose media
    may not use TCP, TLS or a proxy (rooms and boards: UDP only) has no content ladder.
    """
    media = PROFILES[profile].media
    if any(r.transport in media for r in CONTENT_LADDER):
        return
    raise ProfileRefused(
        f"{_plural(profile)} cannot present or receive shared content: content travels over"
        f" TCP, TLS or an HTTP proxy, and {_plural(profile)} send media over UDP only;"
        " share from a desktop or mobile client"
    )


def content_plan(profile: DeviceProfile, offered: Iterable[str]) -> tuple[Rung, ...]:
    """The content ladder's rungs a node offers that ``profile`` may use, best first.

    ``http-proxy`` is offered implicitly by every node with a ``tls/443`` rung. Raises
    :class:`ProfileRefused` when the profile has no content ladder, or the node offers
    none of its rungs.
    """
    check_content(profile)
    names = set(offered)
    if TLS_443.name in names:
        names.add(HTTP_PROXY_443.name)
    media = PROFILES[profile].media
    chosen = tuple(r for r in CONTENT_LADDER if r.transport in media and r.name in names)
    if not chosen:
        offered_text = ", ".join(sorted(names)) or "nothing"
        raise ProfileRefused(
            f"the node offers no content transport {_plural(profile)} may use"
            f" ({offered_text}); content needs one of "
            + ", ".join(r.name for r in CONTENT_LADDER)
        )
    return chosen


def rung(name: str) -> Rung:
    """Look a rung up by its canonical name; ``ValueError`` naming the valid ones."""
    try:
        return RUNGS_BY_NAME[RungName(name)]
    except ValueError:
        valid = ", ".join(RUNGS_BY_NAME)
        raise ValueError(f"unknown transport {name!r}; expected one of {valid}") from None


def rung_names(rungs: Sequence[Rung]) -> list[RungName]:
    return [r.name for r in rungs]
