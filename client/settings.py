"""The client's settings: one frozen object from the flags and ``PINHOLE_*`` variables.

The cloud, its CA, the organisation and its enrollment key come from
``--stack stack.json`` (written by ``pinhole-lab stack``) or from ``--cloud``,
``--ca``, ``--org`` and ``--enrollment-key`` (a flag wins over the stack);
every flag also reads its ``PINHOLE_*`` variable (``edge.flags``), so
:func:`from_args` sees both. A setting that is wrong is a usage failure
(exit 2) naming the flag or file and what to give instead.
"""

from __future__ import annotations

import argparse
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import ValidationError

from client.cache import default_directory
from client.errors import PinsError, ProxyError
from client.pins import Pins, PinStore, in_effect
from client.proxy import proxy_config
from edge import boundary
from edge.files import StackFile, first_problem
from edge.flags import masked, setting, settings_from
from wire.transports import DeviceProfile

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
