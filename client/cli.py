"""pinhole: the client CLI - register, pin, probe, meeting create, join, call, join-link,
netcheck.

The parser (its help: :data:`DESCRIPTION`, :data:`COMMANDS`, the exit codes of
:data:`EPILOG`, which are :mod:`edge.boundary`'s), the settings from ``--stack`` or
the flags, and the printing of each command's result; the library does the work.

The settings are one frozen :class:`ClientSettings` from the flags and ``PINHOLE_*``
variables. The cloud, its CA, the organisation and its enrollment key come from
``--stack stack.json`` (written by ``pinhole-lab stack``) or from ``--cloud``,
``--ca``, ``--org`` and ``--enrollment-key`` (a flag wins over the stack); every flag
also reads its ``PINHOLE_*`` variable (``edge.flags``), so :func:`from_args` sees both.
A setting that is wrong is a usage failure (exit 2) naming the flag or file and what to
give instead. They are the CLI's alone: the library takes none of them.
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
import signal
import socket
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import uvloop
from pydantic import ValidationError

from client import firewall_rules, netcheck
from client.api import CloudApi
from client.cache import IdentitySlot, NodeListCache, ReportCache, default_directory
from client.call import CallOptions, CallSecond, Enrollment
from client.device import Device
from client.errors import PinsError, ProxyError
from client.failures import Context, translate
from client.firewall_rules import RuleFormat
from client.media import CONSENT_S
from client.pins import Pins, PinStore, checked, in_effect
from client.probe import NOT_YET, ProbeOutcome
from client.proxy import LocalTunnelProxy, discover_proxy, proxy_config
from edge import boundary
from edge.files import StackFile, first_problem
from edge.flags import (
    TRUE,
    Number,
    Parser,
    add_settings,
    add_version,
    apply_environment,
    masked,
    setting,
    settings_from,
)
from wire.models import DeviceRegistered
from wire.tls import client_context
from wire.transports import DeviceProfile

DESCRIPTION = """\
Pinhole's client: it registers this device with the cloud, probes the media
nodes over UDP, TCP and TLS, joins meetings and carries their media, falling
back until media flows, and says what the network lets out.

Settings come from --stack stack.json (written by 'pinhole-lab stack') or from
--cloud, --ca, --org and --enrollment-key. Every flag also reads PINHOLE_<FLAG>
(--force-probe: PINHOLE_FORCE_PROBE=1); docs/design.md lists every variable.
Each command prints a table, or one JSON document with --json (errors too:
{"error": {"code", "message", "hint"}})."""

EPILOG = """\
exit codes:
  0  done
  1  anything else (the message says what)
  2  usage: a flag, a PINHOLE_* variable or a file it names
  3  cannot reach the cloud (or the proxy)
  4  no media path: no node reachable on a transport the profile allows
  5  TLS inspection: the cloud's certificate or pinned key did not verify
  6  netcheck only: degraded, meetings work but not on the best path

Run 'pinhole COMMAND --help' for a command's own flags."""

SUB_EPILOG = "global flags (--stack, --cloud, --json, --proxy …): see 'pinhole --help'"

#: (name, one line for the list of commands, the paragraph of its own --help)
COMMANDS: dict[str, tuple[str, str]] = {
    "register": ("register this device and print the node list",
                 "Register this device with the cloud of its organisation and print the "
                 "media nodes it was given."),
    "pin": ("show or change the cloud's pinned keys",
            "Show the cloud's SPKI pins in effect and where they come from. After a real key "
            "rotation, re-pin from the new enrollment material (--from-stack); --reset drops "
            "a re-pin. Every change is logged in pins.log in the cache directory."),
    "probe": ("probe every media node and print the reachability table",
              "Probe every endpoint of every media node (UDP, TCP, TLS) with a STUN Binding "
              "Request, report what was reached to the cloud and print the round-trip times. "
              "A report younger than the probe TTL is reused (--force-probe probes again)."),
    "meeting": ("create a meeting",
                "'pinhole meeting create' prints the id of a new meeting; pass it to 'join' "
                "or 'call' with --meeting."),
    "join": ("join a meeting and print the node chosen and why",
             "Join a meeting: the cloud picks a media node from this device's reachability "
             "report. Print the node, the transport plan and the scored candidates."),
    "call": ("join a meeting and send and receive audio",
             "Join a meeting, connect to the node (falling back from UDP to TCP to TLS "
             "until media flows), send and receive SRTP audio for --seconds and print the "
             "transport, packets, loss and jitter. A line a second on stderr shows progress. "
             "Ctrl-C (or SIGTERM) while media flows hangs up: the call leaves the meeting "
             "and prints its report, as if --seconds had ended; a second Ctrl-C stops at "
             "once."),
    "join-link": ("print a link that joins a meeting from a web browser",
                  "Print the address of the cloud's join page for a meeting, with a device "
                  "token in its fragment (#token=…, which a browser never sends to a server). "
                  "Opened in a browser, the page joins over WebRTC with the camera and "
                  "microphone. The browser is a device of its own, named after --name with "
                  "' (browser)' and kept in the cache like this one: a new link for the same "
                  "--name ends the last one's token. Anybody with the link joins as that "
                  "device until the token expires (a day, unless the cloud says otherwise)."),
    "netcheck": ("check what this network lets out, and what to open",
                 "Check the cloud (DNS, TCP, TLS, TLS inspection, HTTPS, WSS), the proxy and "
                 "every media node on every transport; print each check, a verdict and the "
                 "firewall rules to open, best first. The verdict is the exit status: 0 all "
                 "good, 6 degraded (media on a fallback transport), 4 no media path, 3 no "
                 "signaling."),
}

#: how long a call may last, and the bounds of its consent checks (RFC 7675 §5.1)
CALL_SECONDS = Number(float, 0.0, 86400.0, above=True)
CONSENT_CHECK_S = Number(float, 0.5, 60.0)
UDP_IDLE_S = Number(float, 0.0, 600.0)


PIN = re.compile(r"sha256/[A-Za-z0-9+/]{43}=")  # RFC 7469 §2.4: base64 of a SHA-256
PINS_HINT = ("copy the pins from the enrollment material (the pins of stack.json), "
             "sha256/<base64>, 44 characters after the slash")
STACK_HINT = "start a stack with 'pinhole-lab stack --state-dir DIR' and pass DIR/stack.json"


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """``pinhole``'s global flags, each a field (the stack's and the computed ones after)."""

    stack: str = setting("", "stack.json of a running pinhole-lab stack (the cloud, its CA "
                         "and pins, the orgs' keys)", metavar="FILE")
    cloud: str = setting("", "cloud URL, e.g. https://127.0.0.1:8443", metavar="URL")
    # the CA that signed the cloud's certificate ("": the system store)
    ca: str = setting("", "CA certificate that signed the cloud's", metavar="FILE")
    org: str = setting("", "organisation id")
    enrollment_key: str = setting("", "the organisation's enrollment key", metavar="KEY",
                                  masked=True)
    name: str = setting("cli", "device name")
    profile: DeviceProfile = setting(DeviceProfile.DESKTOP, "device profile: the transports "
                                     "and proxy discovery it may use", choices=DeviceProfile)
    json: bool = setting(False, "print one JSON document on stdout (errors too)")
    # None: HTTPS_PROXY, PAC or WPAD may name one
    proxy: str | None = setting(None, "HTTP proxy for signaling and proxy media, "
                                "http://[user:pass@]host:port (default: HTTPS_PROXY unless "
                                "NO_PROXY names the cloud)", metavar="URL")
    pac_url: str | None = setting(None, "PAC file that names the proxy (desktop profile only)",
                                  metavar="URL")
    wpad: bool = setting(False, "find the PAC file by WPAD (http://wpad.<domain>/wpad.dat; "
                         "desktop only)")
    proxy_user: str | None = setting(None, "user for a proxy found by PAC/WPAD", metavar="USER")
    proxy_password: str = setting("", "password for a proxy found by PAC/WPAD",
                                  metavar="PASSWORD", masked=True)
    # --pin: they win over a re-pin and the stack's
    pin_flags: tuple[str, ...] = setting(
        (), "the cloud's SPKI pin, sha256/<base64> (RFC 7469), repeatable: primary and backup "
        "(comma-separated in the variable; default: the pins of the enrollment material, "
        "stack.json, or a re-pin made with 'pinhole pin'; never learned from a connection)",
        flag="--pin", many=True)
    cache_dir: Path = setting(help="where the device identity and probe reports are kept "
                              "(default: $XDG_CACHE_HOME/pinhole or ~/.cache/pinhole)",
                              factory=default_directory, type=Path, metavar="DIR")
    no_cache: bool = setting(False, "a new device identity and a fresh probe every run")
    force_probe: bool = setting(False, "probe even when a report younger than the probe TTL "
                                "is cached")
    stack_pins: tuple[str, ...] = ()  # the enrollment material's SPKI pins
    wpad_host: str | None = None  # --wpad: this host's name, for wpad.<domain>

    @property
    def proxy_credentials(self) -> tuple[str, str] | None:
        return (self.proxy_user, self.proxy_password) if self.proxy_user else None

    def pin_store(self) -> PinStore | None:
        """Where re-pins are kept (None with ``--no-cache``)."""
        return None if self.no_cache else PinStore(self.cache_dir)

    def pins(self, store: PinStore | None) -> Pins:
        """The pins in effect and their source (``client.pins``: --pin, a re-pin, the
        enrollment material); never a key the cloud presented."""
        try:
            return in_effect(self.cloud, list(self.pin_flags), store, list(self.stack_pins))
        except PinsError as exc:
            raise boundary.usage(str(exc), PINS_HINT) from None

    def masked(self) -> dict[str, object]:
        """Every setting, secrets masked: what may be printed or logged."""
        return masked(self)


def cloud_url(value: str, where: str) -> str:
    """``value`` when it is an http(s) URL with a host and a good port, else a usage failure."""
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


def _stack(path: str, org_flag: str | None) -> dict[str, str]:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise boundary.Failure(boundary.ExitCode.USAGE, "usage",
                               f"--stack {path}: {(exc.strerror or '').lower()}",
                               STACK_HINT) from None
    try:
        stack = StackFile.model_validate_json(raw)
    except ValidationError as exc:
        raise boundary.usage(f"--stack {path} is not a Pinhole stack.json "
                             f"({first_problem(exc)})", STACK_HINT) from None
    # --org picks one of the stack's orgs (the first by default)
    org = org_flag if org_flag in stack.orgs else next(iter(stack.orgs))
    ca = str(Path(path).parent / stack.ca) if stack.ca else ""  # beside stack.json
    return {"cloud": stack.cloud, "ca": ca, "org": org,
            "enrollment_key": stack.orgs[org].enrollment_key, "pins": ",".join(stack.pins)}


def from_args(args: argparse.Namespace) -> ClientSettings:
    """The settings of ``pinhole``'s parsed flags (their variables applied already)."""
    out = _stack(args.stack, args.org) if args.stack else {}
    for key in ("cloud", "ca", "org", "enrollment_key"):
        if getattr(args, key):
            out[key] = getattr(args, key)
    missing = [k for k in ("cloud", "org", "enrollment_key") if k not in out]
    if missing:
        raise boundary.usage(f"missing {', '.join('--' + m.replace('_', '-') for m in missing)}",
                             "pass them, or --stack stack.json")
    cloud_url(out["cloud"], "--cloud" if args.cloud else f"the cloud of {args.stack}")
    for pin in args.pin or ():
        if not PIN.fullmatch(pin):
            raise boundary.usage(f"--pin {pin} is not an SPKI pin", PINS_HINT)
    if args.proxy:
        try:
            proxy_config(args.proxy)
        except ProxyError:
            raise boundary.usage(f"--proxy {args.proxy} is not a proxy URL",
                                 "give http://[user:password@]HOST:PORT") from None
    if out.get("ca"):
        boundary.readable_file("--ca" if args.ca else f"the ca of {args.stack}", out["ca"])
    return settings_from(
        ClientSettings, args, cloud=out["cloud"], org=out["org"],
        enrollment_key=out["enrollment_key"], ca=out.get("ca", ""),
        stack_pins=tuple(p for p in out.get("pins", "").split(",") if p),
        proxy=args.proxy or None, wpad_host=socket.getfqdn() if args.wpad else None)


def _global_flags(p: argparse._ActionsContainer, *, copy: bool) -> None:
    """The flags every command takes, one for each setting of :class:`ClientSettings`;
    ``copy``: the subcommand's copy, which only overrides when given (so "pinhole probe
    --json" works as "pinhole --json probe") and which its help does not repeat."""
    add_settings(p, ClientSettings, copy=copy)


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="pinhole", description=DESCRIPTION, epilog=EPILOG,
               usage="%(prog)s [global flags] COMMAND [flags]")
    add_version(p)
    sub = p.add_subparsers(dest="command", required=True, metavar="", title="commands")
    _global_flags(p.add_argument_group("global flags (before or after the command)"),
                  copy=False)

    def command(name: str) -> argparse.ArgumentParser:
        line, paragraph = COMMANDS[name]
        return sub.add_parser(name, prog=f"pinhole {name}", help=line,
                              description=textwrap.fill(paragraph, 79), epilog=SUB_EPILOG)

    command("register")
    pn = command("pin")
    pn.add_argument("--from-stack", metavar="FILE", type=Path, default=None,
                    help="re-pin the cloud to the pins of this (new) enrollment material")
    pn.add_argument("--reset", action="store_true",
                    help="drop this device's re-pin: the enrollment material's pins apply")
    command("probe")
    m = command("meeting")
    m.add_argument("action", choices=["create"], help="create: print a new meeting id")
    m.add_argument("--id", dest="meeting_id", default=None,
                   help="a meeting id of your choice (creating it again answers the same one)")
    m.add_argument("--title", default="", help="the meeting's title")
    m.add_argument("--private", action="store_true",
                   help="keep all media on the organisation's hybrid clusters, never the cloud: "
                   "a participant who reaches none of their nodes is refused")
    j = command("join")
    j.add_argument("--meeting", metavar="ID", required=True,
                   help="meeting id (pinhole meeting create)")
    j.add_argument("--create", action="store_true",
                   help="create the meeting with this id first, unless it exists")
    c = command("call")
    c.add_argument("--meeting", metavar="ID", required=True,
                   help="meeting id (pinhole meeting create)")
    c.add_argument("--create", action="store_true",
                   help="create the meeting with this id first, unless it exists")
    c.add_argument("--seconds", type=CALL_SECONDS, default=5.0,
                   help="how long to stay in the call")
    c.add_argument("--consent-check-s", "--consent-s", "--keepalive-s", dest="consent_s",
                   metavar="S", type=CONSENT_CHECK_S, default=CONSENT_S,
                   help="consent check (and keepalive) interval, randomized ±20%% "
                   f"(RFC 7675 §5.1; default {CONSENT_S:g} s, so a pinhole that closes "
                   "after 5 s idle holds)")
    c.add_argument("--mute", action="store_true",
                   help="send no media, only receive (consent checks keep the leg and the "
                   "firewall pinhole open)")
    c.add_argument("--video", action="store_true",
                   help="also send video-sized packets (1100 B payload, 25 per second)")
    c.add_argument("--share", action="store_true",
                   help="present: take the content floor and share a synthetic screen (2 "
                   "frames a second of 30 packets) on TCP 5004, then TCP 33434, TLS 443, the "
                   "proxy; the report's content section says how it went (a UDP-only device "
                   "profile cannot share: content.refused says why)")
    c.add_argument("--take-over", action="store_true",
                   help="with --share: take the floor even while another participant "
                   "presents (they are told and stop)")
    jl = command("join-link")
    jl.add_argument("--meeting", metavar="ID", required=True,
                    help="meeting id (pinhole meeting create)")
    jl.add_argument("--create", action="store_true",
                    help="create the meeting with this id first, unless it exists")
    nc = command("netcheck")
    nc.add_argument("--rules", choices=[f.value for f in RuleFormat], default="text",
                    help="how to print the rules to open: text, or ready nft / iptables "
                    "commands")
    nc.add_argument("--udp-idle-s", type=UDP_IDLE_S, default=0.0,
                    help="also measure, for this many seconds (e.g. 20; at most 600), how "
                    "long the firewall keeps a UDP pinhole for a participant who only listens")
    for each in sub.choices.values():  # "pinhole probe --force-probe" as well
        _global_flags(each, copy=True)
    return p


#: what a join link's device adds to --name
BROWSER = " (browser)"


def join_link(cloud: str, meeting_id: str, token: str) -> str:
    """The join page of ``meeting_id`` on ``cloud`` with ``token`` in its fragment, which a
    browser keeps to itself (RFC 3986 §3.5: never sent in a request)."""
    return (f"{cloud.rstrip('/')}/join/{quote(meeting_id, safe='')}"
            f"#token={quote(token, safe='')}")


def _probe_rows(outcomes: list[ProbeOutcome]) -> list[dict[str, Any]]:
    return [
        {"node": o.target.node_id, "rung": o.target.rung, "port": o.target.address.port,
         "rtt_ms": None if o.rtt_ms is None else round(o.rtt_ms, 2),
         "mapped": str(o.mapped) if o.mapped else None, "error": o.error}
        for o in outcomes
    ]


def _progress(second: CallSecond) -> None:
    """One line a second on stderr: the rung, the packets, the loss, who else is here."""
    company = (f"{second.others} other participant(s)" if second.others else
               "nobody else is in the meeting yet: media flows once someone joins")
    print(f"  {second.second:>3} s  {second.rung}  sent {second.packets_sent}  received "
          f"{second.packets_received}  loss {second.loss:.1%}  {company}", file=sys.stderr,
          flush=True)


class HangUpOnSignal:
    """Ctrl-C (SIGINT) or SIGTERM while a call talks hangs it up: ``event`` is set, the
    call leaves and its report is printed, as ping prints its summary. Before the call
    talks, and at a second signal, they do what they always did (Ctrl-C: "interrupted",
    exit 130)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self._previous: dict[int, Any] = {}

    def arm(self) -> None:
        """From now on a signal hangs up (called when the call starts to talk)."""
        if self._previous:
            return
        loop = asyncio.get_running_loop()
        for sig in self.SIGNALS:
            self._previous[sig] = signal.getsignal(sig)
            loop.add_signal_handler(sig, self._received, sig)

    def _received(self, sig: int) -> None:
        if not self.event.is_set():
            self.event.set()
            return
        self.disarm()  # the second one: what the signal did before
        signal.raise_signal(sig)

    def disarm(self) -> None:
        loop = asyncio.get_running_loop()
        for sig, previous in self._previous.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, previous)
        self._previous.clear()


def _still_waiting(outcomes: list[ProbeOutcome], source: str) -> None:
    """The end of the probe's progress line: the rungs reported before they answered."""
    if source == "probe":
        waiting = sum(o.error == NOT_YET for o in outcomes)
        print(f", {waiting} still waiting: reported as unreachable for now" if waiting
              else "", file=sys.stderr)


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


def _pin_command(args: argparse.Namespace) -> dict[str, Any]:
    """``pinhole pin``: show, re-pin from new enrollment material, or reset; logged."""
    store = PinStore(Path(args.cache_dir) if args.cache_dir else default_directory())
    if args.from_stack is not None:
        try:
            stack = StackFile.model_validate_json(Path(args.from_stack).read_bytes())
            pins = checked(stack.pins, str(args.from_stack))
        except OSError as exc:
            raise boundary.unreadable("--from-stack", str(args.from_stack), exc) from None
        except (ValidationError, PinsError) as exc:
            raise boundary.usage(f"--from-stack {args.from_stack} is not enrollment material "
                                 "with pins", PINS_HINT) from exc
        if not pins:
            raise boundary.usage(f"--from-stack {args.from_stack} carries no pins",
                                 "ask for enrollment material with the cloud's pins")
        logged = store.repin(stack.cloud, pins, str(args.from_stack))
        print(f"pinhole: {logged}", file=sys.stderr)
        return {"cloud": stack.cloud, "pins": list(pins), "source": str(args.from_stack),
                "logged": str(store.log)}
    s = from_args(args)
    if args.reset:
        dropped = store.reset(s.cloud)
        print(f"pinhole: {dropped or 'no re-pin to drop for ' + s.cloud}", file=sys.stderr)
    effective = s.pins(store)
    return {"cloud": s.cloud, "pins": list(effective.pins), "source": effective.source}


async def _run(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    if args.command == "pin":
        return _pin_command(args)
    s = from_args(args)
    ctx.cloud, ctx.ca = s.cloud, s.ca
    ctx.proxy = s.proxy or ""
    if args.command == "netcheck":
        return await _netcheck(args, s)
    proxy, _ = await discover_proxy(
        s.cloud, s.profile, explicit=s.proxy, pac_url=s.pac_url, wpad_host=s.wpad_host,
        credentials=s.proxy_credentials)
    if proxy is not None:
        ctx.proxy = f"http://{proxy.host}:{proxy.port}"
    # a browser with a join link is a device of its own: a call from here keeps its token
    name = f"{s.name}{BROWSER}" if args.command == "join-link" else s.name
    key = hashlib.sha256(f"{s.cloud}|{s.org}|{name}|{s.profile.value}".encode()
                         ).hexdigest()[:16]
    try:
        identity = (IdentitySlot(None, None) if s.no_cache else
                    IdentitySlot.claim(s.cache_dir, key))
    except OSError as exc:
        raise boundary.unreadable("--cache-dir", str(s.cache_dir), exc) from None
    # the pins come from the enrollment material (or a re-pin by hand), never from a connection
    pins = s.pins(s.pin_store()).pins
    shim = await LocalTunnelProxy(proxy).start() if proxy else None  # any proxy auth
    api = CloudApi(s.cloud, client_context(s.ca or None),
                   proxy=shim.url if shim else None, pins=pins)
    device = Device(api, s.profile, cache=None if s.no_cache else ReportCache(s.cache_dir),
                    proxy=proxy)
    progress = None if s.json else (
        lambda done, total, o: print(f"\rprobed {done}/{total}", end="", file=sys.stderr,
                                     flush=True))

    def registered(reg: DeviceRegistered) -> None:
        identity.save(reg.device_id, None)  # never a key the cloud presented
        if not s.no_cache:  # for netcheck, when signaling fails another day
            with contextlib.suppress(OSError):
                NodeListCache(s.cache_dir).store(s.cloud, s.org, list(reg.nodes))

    enrollment = Enrollment(s.org, s.enrollment_key, s.name, identity.device_id)
    try:
        if args.command == "call":
            hang_up = HangUpOnSignal()

            def second(second: CallSecond) -> None:
                hang_up.arm()
                if not s.json:
                    _progress(second)

            try:
                report = await device.call(args.meeting, CallOptions(
                    enrollment=enrollment, create=args.create, seconds=args.seconds,
                    consent_s=args.consent_s, mute=args.mute, video=args.video,
                    share=args.share or args.take_over, take_over=args.take_over,
                    force_probe=s.force_probe, on_registered=registered, on_probe=progress,
                    on_discovered=None if progress is None else _still_waiting,
                    on_second=second, hang_up=hang_up.event))
            finally:
                hang_up.disarm()
            return report.as_dict()
        reg = await device.register(s.org, s.enrollment_key, name, identity.device_id)
        registered(reg)
        if args.command == "join-link":
            if args.create:
                await api.create_meeting(meeting_id=args.meeting)
            else:
                await api.meeting(args.meeting)  # a link to no meeting: say so now
            if not s.json:
                print(f"pinhole: open it in a browser to join {args.meeting} as '{name}' "
                      f"(until {reg.expires_at:%Y-%m-%d %H:%M} UTC); keep it private: the "
                      "token in it is the device's", file=sys.stderr)
            return {"url": join_link(s.cloud, args.meeting, reg.token.get_secret_value())}
        if args.command == "register":
            return {"device_id": reg.device_id, "nodes": [n.model_dump() for n in reg.nodes]}
        if args.command == "meeting":
            meeting = await api.create_meeting(args.title, args.meeting_id,
                                               private=args.private)
            return {"meeting_id": meeting.id, "private": meeting.private}
        await device.discover(progress, force=s.force_probe)
        if progress is not None:
            _still_waiting(device.outcomes, device.source)
        if args.command == "probe":  # the whole probe, not an early report
            return {"device_id": reg.device_id, "source": device.source,
                    "probes": _probe_rows(await device.finished())}
        if args.create:
            await api.create_meeting(meeting_id=args.meeting)
        joined = await device.join(args.meeting)
        return {"meeting_id": joined.meeting_id, "participant_id": joined.participant_id,
                "node": joined.node.id, "plan": [e.rung for e in joined.plan],
                "reason": joined.reason.model_dump()}
    except aiohttp.ClientHttpProxyError:
        if shim is not None and shim.last_error:
            raise ProxyError(shim.last_error) from None
        raise
    finally:
        identity.release()
        await device.close()
        await api.close()
        if shim is not None:
            await shim.close()


async def _netcheck(args: argparse.Namespace, s: ClientSettings) -> dict[str, Any]:
    """Every check as a row, progress on stderr while it waits, a verdict and the rules."""
    check = netcheck.Settings(
        cloud=s.cloud, org=s.org, enrollment_key=s.enrollment_key, ca=s.ca or None,
        pins=s.pins(s.pin_store()).pins, name=s.name, profile=s.profile, proxy=s.proxy,
        pac_url=s.pac_url, wpad_host=s.wpad_host, proxy_credentials=s.proxy_credentials,
        cache_dir=None if s.no_cache else s.cache_dir, udp_idle_s=args.udp_idle_s)
    progress = (lambda line: None) if s.json else (
        lambda line: print(line, file=sys.stderr, flush=True))
    report = await netcheck.Netcheck(check, progress).run()
    result = report.as_dict()
    result["rule_lines"] = firewall_rules.render(report.rules, RuleFormat(args.rules))
    return {"netcheck": result, "table": netcheck.table(report)}


def _print(args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "table"}, default=str))
    elif "source" in result and "pins" in result:
        print(f"pins of {result['cloud']} ({result['source']}):")
        for pin in result["pins"] or ["(none: only the CA is checked)"]:
            print(f"  {pin}")
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
        content = result.get("content") or {}
        if content.get("role") == "presenter":
            print(f"presented on {content['transport']}: {content['frames_sent']} frames"
                  + (" (the floor was taken over)" if content["lost_floor"] else ""))
        elif content.get("role") == "receiver":
            print(f"received {content['frames_received']} content frames from "
                  f"{content['presenter'] or 'the presenter'} on {content['transport']}")
        if content.get("refused"):
            print(f"pinhole: no screen sharing: {content['refused']}", file=sys.stderr)
    elif "url" in result:
        print(result["url"])
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
    code of :mod:`edge.boundary`, never a traceback."""
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
