"""pinhole: the client CLI - register, probe, meeting create, join, call, netcheck.

Settings come from --stack stack.json (written by 'pinhole-lab stack') or from
--cloud/--ca/--org/--enrollment-key. Every flag also reads PINHOLE_<FLAG>
(e.g. PINHOLE_CLOUD) and may be given before or after the command. Every
command prints a readable table, or one JSON document with --json (errors too:
{"error": {"code", "message", "hint"}}).

Exit codes: 0 done, 1 other failure, 2 usage (a flag or a file it names),
3 cannot reach the cloud, 4 no media path, 5 certificate or pin did not verify.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import uvloop
from pydantic import ValidationError

from client import firewall_rules, netcheck
from client.api import ApiError, CloudApi
from client.cache import IdentitySlot, NodeListCache, ReportCache, default_directory
from client.device import Device
from client.failures import Context, translate
from client.firewall_rules import RuleFormat
from client.media import MediaSession
from client.probe import ProbeOutcome
from client.proxy import LocalTunnelProxy, ProxyConfig, ProxyError, discover_proxy
from wire import boundary
from wire.files import StackFile, first_problem
from wire.flags import TRUE, Parser, add_version, apply_environment
from wire.models import CallMetrics, Event
from wire.tls import client_context
from wire.transports import DeviceProfile

PIN = re.compile(r"sha256/[A-Za-z0-9+/]{43}=")  # RFC 7469 §2.4: base64 of a SHA-256
STACK_HINT = "start a stack with 'pinhole-lab stack --state-dir DIR' and pass DIR/stack.json"


def _global_flags(p: argparse.ArgumentParser, *, copy: bool) -> None:
    """The flags every command takes; ``copy``: the subcommand's copy, which only
    overrides when given (so "pinhole probe --json" works as "pinhole --json probe")."""

    def d(value: object) -> object:
        return argparse.SUPPRESS if copy else value

    p.add_argument("--stack", default=d(None), help="stack.json of a running pinhole-lab stack")
    p.add_argument("--cloud", default=d(None), help="cloud URL, e.g. https://127.0.0.1:8443")
    p.add_argument("--ca", default=d(None), help="CA certificate that signed the cloud's")
    p.add_argument("--org", default=d(None), help="organisation id")
    p.add_argument("--enrollment-key", default=d(None),
                   help="the organisation's enrollment key")
    p.add_argument("--name", default=d("cli"), help="device name")
    p.add_argument("--profile", default=d("desktop"), choices=[p.value for p in DeviceProfile],
                   help="device profile")
    p.add_argument("--json", action="store_true", default=d(False),
                   help="print one JSON document on stdout (errors too)")
    p.add_argument("--proxy", default=d(None),
                   help="HTTP proxy for signaling and proxy media, http://[user:pass@]host:port "
                   "(default: HTTPS_PROXY unless NO_PROXY names the cloud)")
    p.add_argument("--pac-url", default=d(None),
                   help="PAC file that names the proxy (desktop profile only)")
    p.add_argument("--wpad", action="store_true", default=d(False),
                   help="find the PAC file by WPAD (http://wpad.<domain>/wpad.dat; desktop only)")
    p.add_argument("--proxy-user", default=d(None), help="user for a proxy found by PAC/WPAD")
    p.add_argument("--proxy-password", default=d(None),
                   help="password for a proxy found by PAC/WPAD")
    p.add_argument("--pin", default=d(None),
                   help="the cloud's SPKI pin, sha256/<base64> (default: learned at the first "
                   "registration and kept in the cache directory)")
    p.add_argument("--cache-dir", default=d(None),
                   help="where the device identity and probe reports are kept "
                   "(default: $XDG_CACHE_HOME/pinhole or ~/.cache/pinhole)")
    p.add_argument("--no-cache", action="store_true", default=d(False),
                   help="a new device identity and a fresh probe every run")
    p.add_argument("--force-probe", action="store_true", default=d(False),
                   help="probe even when a report younger than the probe TTL is cached")


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="pinhole", description=__doc__)
    add_version(p)
    _global_flags(p, copy=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
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
    nc.add_argument("--rules", choices=[f.value for f in RuleFormat], default="text",
                    help="how to print the rules to open: text, or ready nft / iptables "
                    "commands (default: text)")
    c = sub.add_parser("call", help="join, connect, send and receive SRTP audio, print stats")
    c.add_argument("--meeting", required=True, help="meeting id (pinhole meeting create)")
    c.add_argument("--create", action="store_true",
                   help="create the meeting with this id first, unless it exists")
    c.add_argument("--seconds", type=float, default=5.0, help="how long to stay in the call")
    c.add_argument("--keepalive-s", type=float, default=5.0,
                   help="consent check and keepalive interval, randomized 0.8-1.2x (RFC 7675)")
    c.add_argument("--video", action="store_true",
                   help="also send video-sized packets (1100 B payload, 25 per second)")
    for command in sub.choices.values():  # "pinhole probe --force-probe" as well
        _global_flags(command, copy=True)
    return p


def _cloud_url(value: str, where: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise boundary.usage(f"{where} {value} is not a cloud URL",
                             "give https://HOST[:PORT], e.g. https://127.0.0.1:8443")
    try:
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError:
        raise boundary.usage(f"{where} {value} has a bad port",
                             "give https://HOST[:PORT], e.g. https://127.0.0.1:8443") from None
    return value


def _settings(args: argparse.Namespace) -> dict[str, str]:
    out: dict[str, str] = {}
    if args.stack:
        try:
            raw = Path(args.stack).read_bytes()
        except OSError as exc:
            raise boundary.Failure(boundary.ExitCode.USAGE, "usage",
                                   f"--stack {args.stack}: {(exc.strerror or '').lower()}",
                                   STACK_HINT) from None
        try:
            stack = StackFile.model_validate_json(raw)
        except ValidationError as exc:
            raise boundary.usage(f"--stack {args.stack} is not a Pinhole stack.json "
                                 f"({first_problem(exc)})", STACK_HINT) from None
        # --org picks one of the stack's orgs (the first by default)
        org = args.org if args.org in stack.orgs else next(iter(stack.orgs))
        ca = str(Path(args.stack).parent / stack.ca) if stack.ca else ""  # beside stack.json
        out = {"cloud": stack.cloud, "ca": ca, "org": org,
               "enrollment_key": stack.orgs[org].enrollment_key}
    for key in ("cloud", "ca", "org", "enrollment_key"):
        if getattr(args, key):
            out[key] = getattr(args, key)
    missing = [k for k in ("cloud", "org", "enrollment_key") if k not in out]
    if missing:
        raise boundary.usage(f"missing {', '.join('--' + m.replace('_', '-') for m in missing)}",
                             "pass them, or --stack stack.json")
    _cloud_url(out["cloud"], "--cloud" if args.cloud else f"the cloud of {args.stack}")
    if args.pin and not PIN.fullmatch(args.pin):
        raise boundary.usage(f"--pin {args.pin} is not an SPKI pin",
                             "give sha256/<base64 of the key's SHA-256>, 44 characters after "
                             "the slash")
    if args.proxy:
        try:
            ProxyConfig.from_url(args.proxy)
        except ProxyError:
            raise boundary.usage(f"--proxy {args.proxy} is not a proxy URL",
                                 "give http://[user:password@]HOST:PORT") from None
    if out.get("ca"):
        boundary.readable_file("--ca" if args.ca else f"the ca of {args.stack}", out["ca"])
    return out


def _probe_rows(outcomes: list[ProbeOutcome]) -> list[dict[str, Any]]:
    return [
        {"node": o.target.node_id, "rung": o.target.rung, "port": o.target.address.port,
         "rtt_ms": None if o.rtt_ms is None else round(o.rtt_ms, 2),
         "mapped": str(o.mapped) if o.mapped else None, "error": o.error}
        for o in outcomes
    ]


def _progress(second: int, session: MediaSession, others: int) -> None:
    """One line a second on stderr: the rung, the packets, the loss, who else is here."""
    c = session.counters
    loss = max((st.loss for st in session.sources.values()), default=0.0)
    company = (f"{others} other participant(s)" if others else
               "nobody else is in the meeting yet: media flows once someone joins")
    print(f"  {second:>3} s  {session.rung}  sent {c.packets_sent}  received "
          f"{c.packets_received}  loss {loss:.1%}  {company}", file=sys.stderr, flush=True)


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


def rounded(value: Any, digits: int = 3) -> Any:
    """``value`` with every float rounded (no 91.18200000000002 in the output)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


async def _run(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    s = _settings(args)
    ctx.cloud, ctx.ca = s["cloud"], s.get("ca", "")
    ctx.proxy = args.proxy or ""
    if args.command == "netcheck":
        return await _netcheck(args, s)
    credentials = (args.proxy_user, args.proxy_password or "") if args.proxy_user else None
    proxy, _ = await discover_proxy(
        s["cloud"], DeviceProfile(args.profile), explicit=args.proxy, pac_url=args.pac_url,
        wpad_host=socket.getfqdn() if args.wpad else None, credentials=credentials)
    if proxy is not None:
        ctx.proxy = f"http://{proxy.host}:{proxy.port}"
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_directory()
    key = hashlib.sha256(f"{s['cloud']}|{s['org']}|{args.name}|{args.profile}".encode()
                         ).hexdigest()[:16]
    try:
        identity = (IdentitySlot(None, None) if args.no_cache else
                    IdentitySlot.claim(cache_dir, key))
    except OSError as exc:
        raise boundary.unreadable("--cache-dir", str(cache_dir), exc) from None
    shim = await LocalTunnelProxy(proxy).start() if proxy else None  # any proxy auth
    api = CloudApi(s["cloud"], client_context(s.get("ca")),
                   proxy=shim.url if shim else None, pin=args.pin or identity.pin)
    device = Device(api, DeviceProfile(args.profile),
                    cache=None if args.no_cache else ReportCache(cache_dir), proxy=proxy)
    progress = None if args.json else (
        lambda done, total, o: print(f"\rprobed {done}/{total}", end="", file=sys.stderr,
                                     flush=True))
    try:
        reg = await device.register(s["org"], s["enrollment_key"], args.name,
                                    identity.device_id)
        identity.save(reg.device_id, api.pin or api.seen_pin)  # and pin the cloud's key
        if not args.no_cache:  # for netcheck, when signaling fails another day
            with contextlib.suppress(OSError):
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
        others = {p.id for p in (await api.meeting(joined.meeting_id)).participants
                  if p.id != joined.participant_id}

        async def on_event(event: Event) -> None:
            """media.reassigned: the cloud moved this participant; move the media too."""
            if event.meeting_id == joined.meeting_id and event.participant_id and \
                    event.participant_id != joined.participant_id:
                if event.type == "participant.joined":
                    others.add(event.participant_id)
                elif event.type == "participant.left":
                    others.discard(event.participant_id)
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
                if not args.json and i % 50 == 0:
                    _progress(i // 50, sessions[-1], len(others))
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
            "bytes_sent": c.bytes_sent,
            "packets_received": c.packets_received, "drops": c.drops,
            "loss": loss, "jitter_ms": jitter,
            "rtt_ms": c.keepalive_rtt_ms,
            "attempts": [asdict(a) for a in device.attempts],
            "reassigned": len(sessions) - 1,
            "timings": {  # from the join request, on this device's clock
                "join_ms": join_ms,
                "connect_ms": _ms_since(join_sent, sessions[0].latched_at),
                "first_media_ms": _ms_since(join_sent, first_media),
                # the same moment as Unix time, to compare with other hosts' clocks
                "first_media_at": None if first_media is None
                else round(time.time() - (time.monotonic() - first_media), 3),
            },
        })
        return result
    except aiohttp.ClientHttpProxyError:
        if shim is not None and shim.last_error:
            raise ProxyError(shim.last_error) from None
        raise
    finally:
        identity.release()
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
        if not result["packets_received"]:
            print("(nothing received: nobody else sent media in this meeting; run a second "
                  "'pinhole call' with the same --meeting)", file=sys.stderr)
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


def _wants_json(argv: Sequence[str]) -> bool:
    """--json on the command line or PINHOLE_JSON, before (or without) a successful parse."""
    return "--json" in argv or os.environ.get("PINHOLE_JSON", "").strip().lower() in TRUE


def main(argv: Sequence[str] | None = None) -> int:
    """The error boundary: every failure is one line (JSON too with --json) and an exit
    code of :mod:`wire.boundary`, never a traceback."""
    raw = list(sys.argv[1:] if argv is None else argv)
    ctx = Context()

    def body() -> int:
        parser = _parser()
        apply_environment(parser, os.environ)
        args = parser.parse_args(raw)
        logging.basicConfig(level=logging.WARNING, format="pinhole: warning: %(message)s")
        result = rounded(uvloop.run(_run(args, ctx)))
        _print(args, result)
        if "netcheck" in result:  # the verdict is the exit status
            return int(result["netcheck"]["verdict"]["exit_status"])
        return 0

    return boundary.run("pinhole", body, as_json=lambda: _wants_json(raw), out=sys.stdout,
                        err=sys.stderr, translate=lambda exc: translate(exc, ctx),
                        traceback_wanted=boundary.traceback_wanted(os.environ))


if __name__ == "__main__":
    sys.exit(main())
