"""``pinhole netcheck``: what gets out of this network, and what an administrator should open.

The advice follows the seeds, best first: "we recommend that your firewall
allows inside-initiated UDP connections to port 5004" (media to ANY media
node); "If the Cisco Spark app fails to connect on UDP, it can fall back to
traverse a firewall using TCP port 5004 and TLS port 443 as well, but the
media quality might suffer"; UDP 33434 "can be used as a last resort, we
suggest that you do not open port 33434 for media".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from client.probe import ProbeOutcome
from wire.transports import DeviceProfile, allowed_rungs

#: Rules in the order the seeds recommend them, for rungs found blocked.
RULES: dict[str, str] = {
    "udp/5004": "allow inside-initiated UDP to ANY, destination port 5004, and its replies "
                "(best media quality; seed: 'our recommended solution')",
    "tcp/5004": "allow inside-initiated TCP to the media nodes, destination port 5004 "
                "(fallback when UDP is blocked; quality may suffer)",
    "tls/443": "allow inside-initiated TCP to the media nodes, destination port 443, without "
               "TLS inspection of those connections",
    "udp/33434": "(last resort, not recommended) UDP 33434 is the traceroute port and is "
                 "rate-limited by some ISPs",
    "udp/9000": "allow inside-initiated UDP to the legacy media data centers, port 9000",
}


@dataclass(frozen=True, slots=True)
class RungStatus:
    rung: str
    reachable_nodes: int
    probed_nodes: int
    best_rtt_ms: float | None

    @property
    def works(self) -> bool:
        return self.reachable_nodes > 0


@dataclass(frozen=True, slots=True)
class NetcheckReport:
    https_ok: bool
    https_error: str | None
    wss_ok: bool
    wss_error: str | None
    rungs: tuple[RungStatus, ...]
    media_transport: str | None
    rules: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "https": {"ok": self.https_ok, "error": self.https_error},
            "wss": {"ok": self.wss_ok, "error": self.wss_error},
            "rungs": [{"rung": r.rung, "works": r.works, "reachable_nodes": r.reachable_nodes,
                       "probed_nodes": r.probed_nodes, "best_rtt_ms": r.best_rtt_ms}
                      for r in self.rungs],
            "media_transport": self.media_transport,
            "rules": list(self.rules),
        }


def summarise(
    outcomes: Iterable[ProbeOutcome],
    profile: DeviceProfile,
    *,
    https: tuple[bool, str | None],
    wss: tuple[bool, str | None],
    proxy_configured: bool,
) -> NetcheckReport:
    """Per rung: how many nodes answered and the best RTT; media's transport; the rules."""
    by_rung: dict[str, list[ProbeOutcome]] = {}
    for outcome in outcomes:
        by_rung.setdefault(outcome.target.rung, []).append(outcome)
    ladder = [r.name for r in allowed_rungs(profile, legacy_dc=True)]
    rungs = []
    for name in ladder:
        results = by_rung.get(name, [])
        if not results:
            continue
        rtts = [o.rtt_ms for o in results if o.rtt_ms is not None]
        rungs.append(RungStatus(name, len(rtts), len(results),
                                round(min(rtts), 2) if rtts else None))
    working = [r.rung for r in rungs if r.works]
    media = working[0] if working else None
    if media is None and proxy_configured and "http-proxy" in ladder:
        media = "http-proxy"
    rules = []
    if not https[0]:
        rules.append("allow HTTPS (TCP 443) to the cloud: signaling needs it")
    for name in ("udp/5004", "tcp/5004", "tls/443", "udp/33434"):
        status = next((r for r in rungs if r.rung == name), None)
        if status is not None and not status.works:
            rules.append(RULES[name])
    return NetcheckReport(https[0], https[1], wss[0], wss[1], tuple(rungs), media,
                          tuple(rules))
