"""``pinhole``: the client CLI — register, probe, meeting create, join, call.

Settings come from ``--stack stack.json`` (written by ``pinhole-lab stack``)
or from ``--cloud/--ca/--org/--enrollment-key`` (each also ``PINHOLE_*``).
Every command prints a readable table, or one JSON document with ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from client import firewall_rules, netcheck
from client.api import ApiError, CloudApi
from client.cache import NodeListCache, ReportCache, default_directory
from client.device import Device
from client.firewall_rules import RuleFormat
from client.media import MediaError, MediaSession
from client.probe import ProbeOutcome
from client.proxy import LocalTunnelProxy, ProxyError, discover_proxy
from wire.errors import ProfileRefused
from wire.models import CallMetrics, Event
from wire.tls import client_context
from wire.transports import DeviceProfile

TIMED_OUT = ("timed out: nothing answered (the cloud's HTTPS, or a media node); if this "
             "network lets only an HTTP proxy out, pass --proxy or set HTTPS_PROXY; "
             "'pinhole netcheck' shows what gets out")


class CliError(Exception):
    """A usage or set-up problem, printed as one line with what to do next."""


def _env(name: str) -> str | None:
    return os.environ.get("PINHOLE_" + name.upper())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pinhole", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", default=_env("stack"),
                   help="stack.json of a running pinhole-lab stack")
    p.add_argument("--cloud", default=_env("cloud"), help="cloud URL, e.g. https://127.0.0.1:8443")
    p.add_argument("--ca", default=_env("ca"), help="CA certificate that signed the cloud's")
    p.add_argument("--org", default=_env("org"), help="organisation id")
    p.add_argument("--enrollment-key", default=_env("enrollment_key"),
                   help="the organisation's enrollment key")
    p.add_argument("--name", default=_env("name") or "cli", help="device name")
    p.add_argument("--profile", default=_env("profile") or "desktop",
                   choices=[p.value for p in DeviceProfile], help="device profile")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument("--proxy", default=_env("proxy"),
                   help="HTTP proxy for signaling and proxy media, http://[user:pass@]host:port "
                   "(default: HTTPS_PROXY unless NO_PROXY names the cloud)")
    p.add_argument("--pac-url", default=_env("pac_url"),
                   help="PAC file that names the proxy (desktop profile only)")
    p.add_argument("--wpad", action="store_true",
                   help="find the PAC file by WPAD (http://wpad.<domain>/wpad.dat; desktop only)")
    p.add_argument("--proxy-user", default=_env("proxy_user"),
                   help="user for a proxy found by PAC/WPAD")
    p.add_argument("--proxy-password", default=_env("proxy_password"),
                   help="password for a proxy found by PAC/WPAD")
    p.add_argument("--pin", default=_env("pin"),
                   help="the cloud's SPKI pin, sha256/<base64> (default: learned at the first "
                   "registration and kept in the cache directory)")
    p.add_argument("--cache-dir", default=_env("cache_dir"),
                   help="where the device identity and probe reports are kept "
                   "(default: ~/.cache/pinhole)")
    p.add_argument("--no-cache", action="store_true",
                   help="a new device identity and a fresh probe every run")
    p.add_argument("--force-probe", action="store_true",
                   help="probe even when a report younger than the probe TTL is cached")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("register", help="register this device and print the node list")
    sub.add_parser("probe", help="probe every node over UDP, TCP and TLS; report; print the table")
    m = sub.add_parser("meeting", help="meetings")
    m.add_argument("action", choices=["create"], help="create: print a new meeting id")
    m.add_argument("--id", dest="meeting_id", default=None,
                   help="a meeting id of your choice (creating it again answers the same one)")
    m.add_argument("--title", default="", help="the meeting's title")
    j = sub.add_parser("join", help="join a meeting and print the assignment and its reason")
    j.add_argument("--meeting", required=True, help="meeting id (pinhole meeting create)")
    j.add_argument("--create", action="store_true",
                   help="create the meeting with this id first, unless it exists")
    nc = sub.add_parser("netcheck", help="check the cloud (DNS, TCP, TLS, HTTPS, WSS), the "
                        "proxy and every media node on every transport; print each check, a "
                        "verdict and the firewall rules to open. Exit status: 0 all good, "
                        "1 degraded (media on a fallback transport), 2 no media path, "
                        "3 no signaling")
    nc.add_argument("--rules", choices=[f.value for f in RuleFormat],
                    default=_env("rules") or "text",
                    help="how to print the rules to open: text, or ready nft / iptables "
                    "commands (default: text)")
    c = sub.add_parser("call", help="join, connect, send and receive SRTP audio, print stats")
    c.add_argument("--meeting", required=True, help="meeting id (pinhole meeting create)")
    c.add_argument("--create", action="store_true",
                   help="create the meeting with this id first, unless it exists")
    c.add_argument("--seconds", type=float, default=5.0, help="how long to stay in the call")
    c.add_argument("--keepalive-s", type=float, default=15.0, help="keepalive interval")
    c.add_argument("--video", action="store_true",
                   help="also send video-sized packets (1100 B payload, 25 per second)")
    for command in sub.choices.values():  # "pinhole probe --json" as well as "pinhole --json probe"
        command.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                             help="print one JSON document on stdout")
    return p


def _settings(args: argparse.Namespace) -> dict[str, str]:
    out: dict[str, str] = {}
    if args.stack:
        try:
            stack = json.loads(Path(args.stack).read_text())
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read {args.stack}: {exc}; start one with "
                           "'pinhole-lab stack --state-dir DIR'") from None
        org, creds = next(iter(stack["orgs"].items()))
        out = {"cloud": stack["cloud"], "ca": stack["ca"], "org": org,
               "enrollment_key": creds["enrollment_key"]}
    for key in ("cloud", "ca", "org", "enrollment_key"):
        if getattr(args, key):
            out[key] = getattr(args, key)
    missing = [k for k in ("cloud", "org", "enrollment_key") if k not in out]
    if missing:
        raise CliError(f"missing {', '.join('--' + m.replace('_', '-') for m in missing)};"
                       " or pass --stack stack.json")
    return out


def _probe_rows(outcomes: list[ProbeOutcome]) -> list[dict[str, Any]]:
    return [
        {"node": o.target.node_id, "rung": o.target.rung, "port": o.target.address.port,
         "rtt_ms": None if o.rtt_ms is None else round(o.rtt_ms, 2),
         "mapped": str(o.mapped) if o.mapped else None, "error": o.error}
        for o in outcomes
    ]


def _ms_since(start: float, at: float | None) -> float | None:
    """Milliseconds from ``start`` to ``at`` (both time.monotonic()), or None."""
    return None if at is None else round((at - start) * 1000, 2)


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c] if r[c] is not None else "—")) for r in rows))
              for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    for r in rows:
        lines.append("  ".join(str(r[c] if r[c] is not None else "—").ljust(widths[c])
                               for c in cols))
    return "\n".join(lines)


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    s = _settings(args)
    if args.command == "netcheck":
        return await _netcheck(args, s)
    credentials = (args.proxy_user, args.proxy_password or "") if args.proxy_user else None
    proxy, _ = await discover_proxy(
        s["cloud"], DeviceProfile(args.profile), explicit=args.proxy, pac_url=args.pac_url,
        wpad_host=socket.getfqdn() if args.wpad else None, credentials=credentials)
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_directory()
    identity = cache_dir / ("device-" + hashlib.sha256(
        f"{s['cloud']}|{s['org']}|{args.name}|{args.profile}".encode()).hexdigest()[:16]
        + ".json")
    known: dict[str, str] = {}
    if not args.no_cache:
        with contextlib.suppress(OSError, ValueError):
            known = {k: str(v) for k, v in json.loads(identity.read_text()).items()}
    shim = await LocalTunnelProxy(proxy).start() if proxy else None  # any proxy auth
    api = CloudApi(s["cloud"], client_context(s.get("ca")),
                   proxy=shim.url if shim else None, pin=args.pin or known.get("pin"))
    device = Device(api, DeviceProfile(args.profile),
                    cache=None if args.no_cache else ReportCache(cache_dir), proxy=proxy)
    progress = None if args.json else (
        lambda done, total, o: print(f"\rprobed {done}/{total}", end="", file=sys.stderr,
                                     flush=True))
    try:
        reg = await device.register(s["org"], s["enrollment_key"], args.name,
                                    known.get("device_id"))
        if not args.no_cache:  # keep the identity, and pin the cloud's key from now on
            identity.parent.mkdir(parents=True, exist_ok=True)
            pin = api.pin or api.seen_pin
            identity.write_text(json.dumps({"device_id": reg.device_id,
                                            **({"pin": pin} if pin else {})}))
            NodeListCache(cache_dir).store(s["cloud"], s["org"], list(reg.nodes))
        if args.command == "register":
            return {"device_id": reg.device_id, "nodes": [n.model_dump() for n in reg.nodes]}
        if args.command == "meeting":
            meeting = await api.create_meeting(args.title, args.meeting_id)
            return {"meeting_id": meeting.id}
        outcomes = await device.discover(progress, force=args.force_probe)
        if progress is not None and device.source == "probe":
            print(file=sys.stderr)
        if args.command == "probe":
            return {"device_id": reg.device_id, "source": device.source,
                    "probes": _probe_rows(outcomes)}
        if args.create:
            await api.create_meeting(meeting_id=args.meeting)
        join_sent = time.monotonic()
        joined = await device.join(args.meeting)
        join_ms = _ms_since(join_sent, time.monotonic())
        result: dict[str, Any] = {
            "meeting_id": joined.meeting_id, "participant_id": joined.participant_id,
            "node": joined.node.id, "plan": [e.rung for e in joined.plan],
            "reason": joined.reason.model_dump(),
        }
        if args.command == "join":
            return result
        session = await device.connect(joined)
        session.start_keepalives(args.keepalive_s)
        sessions = [session]

        async def on_event(event: Event) -> None:
            """media.reassigned: the cloud moved this participant; move the media too."""
            if (event.type == "media.reassigned" and event.assignment is not None
                    and event.participant_id == joined.participant_id):
                moved = await device.connect(event.assignment)
                moved.start_keepalives(args.keepalive_s)
                sessions[-1].close()
                sessions.append(moved)

        follower = asyncio.create_task(device.follow_events(on_event))
        reports: set[asyncio.Task[None]] = set()
        try:
            for i in range(int(args.seconds * 50)):
                sessions[-1].send_audio(i.to_bytes(4, "big") + bytes(156))
                if args.video and i % 2 == 0:
                    sessions[-1].send_video()
                if i % 100 == 99:  # every 2 s: the quality so far, for the operator's console
                    reports.add(asyncio.create_task(_live_report(
                        api, joined.meeting_id, joined.participant_id, sessions[-1],
                        i / 50)))
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
        finally:
            for report in reports:
                report.cancel()
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        session = sessions[-1]
        session.close()
        await api.leave(joined.meeting_id, joined.participant_id)
        c = session.counters
        loss = max((st.loss for st in session.sources.values()), default=0.0)
        jitter = max((st.jitter_ms for st in session.sources.values()), default=0.0)
        first_media = next((leg.first_media_at for leg in sessions
                            if leg.first_media_at is not None), None)
        await api.report_call(CallMetrics.model_validate({  # the seed's analytics
            "meeting_id": joined.meeting_id, "participant_id": joined.participant_id,
            "transport": session.rung, "duration_s": args.seconds,
            "packets_sent": c.packets_sent, "packets_received": c.packets_received,
            "loss": min(1.0, max(0.0, loss)), "jitter_ms": jitter,
            "rtt_ms": c.keepalive_rtt_ms,
            "time_to_media_ms": _ms_since(join_sent, first_media)}))
        result.update({
            "transport": session.rung, "packets_sent": c.packets_sent,
            "packets_received": c.packets_received, "drops": c.drops,
            "loss": loss, "jitter_ms": jitter,
            "rtt_ms": c.keepalive_rtt_ms,
            "attempts": [asdict(a) for a in device.attempts],
            "reassigned": len(sessions) - 1,
            "timings": {  # from the join request, on this device's clock
                "join_ms": join_ms,
                "connect_ms": _ms_since(join_sent, sessions[0].latched_at),
                "first_media_ms": _ms_since(join_sent, first_media),
            },
        })
        return result
    except aiohttp.ClientHttpProxyError as exc:
        raise CliError(f"the proxy refused the cloud connection: "
                       f"{shim.last_error if shim and shim.last_error else exc}") from None
    finally:
        await api.close()
        if shim is not None:
            await shim.close()


async def _netcheck(args: argparse.Namespace, s: dict[str, str]) -> dict[str, Any]:
    """Every check as a row, progress on stderr while it waits, a verdict and the rules."""
    cache_dir = None if args.no_cache else (
        Path(args.cache_dir) if args.cache_dir else default_directory())
    settings = netcheck.Settings(
        cloud=s["cloud"], org=s["org"], enrollment_key=s["enrollment_key"], ca=s.get("ca"),
        pin=args.pin, name=args.name, profile=DeviceProfile(args.profile), proxy=args.proxy,
        pac_url=args.pac_url, wpad_host=socket.getfqdn() if args.wpad else None,
        proxy_credentials=((args.proxy_user, args.proxy_password or "")
                           if args.proxy_user else None),
        cache_dir=cache_dir)
    progress = (lambda line: None) if args.json else (
        lambda line: print(line, file=sys.stderr, flush=True))
    report = await netcheck.Netcheck(settings, progress).run()
    result = report.as_dict()
    result["rule_lines"] = firewall_rules.render(report.rules, RuleFormat(args.rules))
    return {"netcheck": result, "table": netcheck.table(report)}


async def _live_report(api: CloudApi, meeting_id: str, participant_id: str,
                       session: MediaSession, seconds: float) -> None:
    """An in-call quality report (``final: false``); a lost one is simply not shown."""
    c = session.counters
    with contextlib.suppress(ApiError, aiohttp.ClientError, OSError, TimeoutError, ValueError):
        await api.report_call(CallMetrics.model_validate({
            "meeting_id": meeting_id, "participant_id": participant_id,
            "transport": session.rung, "duration_s": seconds, "final": False,
            "packets_sent": c.packets_sent, "packets_received": c.packets_received,
            "loss": min(1.0, max(0.0, max((s.loss for s in session.sources.values()),
                                          default=0.0))),
            "jitter_ms": max((s.jitter_ms for s in session.sources.values()), default=0.0),
            "rtt_ms": c.keepalive_rtt_ms}))


def _print(args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "table"}, default=str))
    elif "netcheck" in result:
        n = result["netcheck"]
        print("\n".join(result["table"]))
        print(f"media would use: {n['media_transport'] or 'nothing: no transport gets out'}")
        print(f"verdict: {n['verdict']['text']} (exit {n['verdict']['exit_status']})")
        for hint in n["hints"]:
            print(f"hint: {hint}")
        if n["rules"]:
            print("to open, best first:" if args.rules == "text" else
                  f"to open, best first ({args.rules}; adapt the table and chain names):")
            print("\n".join(n["rule_lines"]))
        else:
            print("nothing to open")
    elif "probes" in result:
        print(_table(result["probes"]))
        if result.get("source") == "cache":
            print("(the cached report from this network, younger than the probe TTL; "
                  "--force-probe probes again)")
    elif "packets_received" in result:
        print(_table([{k: result[k] for k in ("node", "transport", "packets_sent",
                                              "packets_received", "loss", "jitter_ms")}]))
    elif "plan" in result:
        print(f"node {result['node']}; plan {' → '.join(result['plan'])}")
        print(_table([{k: c[k] for k in ("node_id", "rung", "rtt_ms", "score", "excluded")}
                      for c in result["reason"]["candidates"]]))
    elif "meeting_id" in result:
        print(result["meeting_id"])
    else:
        print(f"registered {result['device_id']}")
        print(_table([{"node": n["id"], "region": n["region"], "address": n["address"]}
                      for n in result["nodes"]]))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result = uvloop.run(_run(args))
    except TimeoutError:  # an OSError whose text is empty: say what it means
        print(f"pinhole: {TIMED_OUT}", file=sys.stderr)
        return 1
    except (CliError, ApiError, MediaError, ProfileRefused, ProxyError, OSError) as exc:
        print(f"pinhole: {exc}", file=sys.stderr)
        return 1
    _print(args, result)
    if "netcheck" in result:
        return int(result["netcheck"]["verdict"]["exit_status"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
