"""The enterprise firewall: a profile's nftables ruleset, the NAT and the UDP pinhole lifetime.

Used twice: by the netns lab on its ``gw`` namespace (through ``ip netns exec``), and as
``pinhole-lab firewall``, the command of docker-compose.yml's ``firewall`` service, which
finds its enterprise-side and internet-side interfaces by address, loads the profile named
by ``PINHOLE_FIREWALL_PROFILE`` and stays up until stopped.

Addresses are the same in both (docs/design.md's lab, recorded in docs/decisions.md):
    internet 198.18.0.0/24  cloud .1, media nodes .2 .3 .4, the firewall .254
    enterprise 10.99.0.0/24 the firewall .1, a client .2, the HTTP proxy .3, the hybrid node .4
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from edge.flags import Number, Parser, apply_environment

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
PROFILES = ("open", "udp-5004", "udp-33434", "no-udp", "tls-only", "proxy-only",
            "whitelist", "stun-inspection", "hybrid", "hybrid-tls-only",
            "hybrid-no-cascade-udp", "hybrid-legacy-ports", "hybrid-proxy-signalling",
            "no-tcp-5004")
INET_PREFIX = "198.18.0"
CLOUD = INET_PREFIX + ".1"
GW_WAN = INET_PREFIX + ".254"
ENT_PREFIX = "10.99.0"
ENT_SUBNET = ENT_PREFIX + ".0/24"
GW_LAN = ENT_PREFIX + ".1"
CLIENT = ENT_PREFIX + ".2"
PROXY_HOST = ENT_PREFIX + ".3"  # the enterprise's HTTP proxy (proxy-only profile)
HYBRID_HOST = ENT_PREFIX + ".4"  # the in-house hybrid media node (hybrid profile)
HYBRID_HOST_2 = ENT_PREFIX + ".5"  # a second node of its cluster (the hybrid profiles)
HYBRID_HOSTS = (HYBRID_HOST, HYBRID_HOST_2)
WHITELIST_RANGE = INET_PREFIX + ".4/31"  # node-far only
#: Profiles that send the clients' media to the in-house hybrid node: without one, nothing.
HYBRID_PROFILES = ("hybrid", "hybrid-tls-only", "hybrid-no-cascade-udp", "hybrid-legacy-ports",
                   "hybrid-proxy-signalling")
#: the gateway's conntrack UDP timeout, in whole seconds (the kernel's unit)
UDP_TIMEOUT_S = Number(int, 1, 86400)
UDP_TIMEOUT_KEYS = ("net.netfilter.nf_conntrack_udp_timeout",
                    "net.netfilter.nf_conntrack_udp_timeout_stream")


class LabError(Exception):
    """A lab command failed; the message names it and what it said."""


def run(*argv: str, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    except OSError as exc:  # the tool is not installed
        raise LabError(f"{argv[0]} cannot run: {exc.strerror}") from None
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def ruleset(profile: str, lan: str, wan: str) -> str:
    """The nftables script for ``profile``: defines, the base tables, the profile's rules."""
    if profile not in PROFILES:
        raise LabError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    defines = (f'define LAN = "{lan}"\ndefine WAN = "{wan}"\n'
               f"define MEDIA_RANGE = {WHITELIST_RANGE}\ndefine PROXY_HOST = {PROXY_HOST}\n"
               f"define HYBRID_HOSTS = {{ {', '.join(HYBRID_HOSTS)} }}\n"
               f"define CLOUD = {CLOUD}\n")
    return (defines + (PROFILES_DIR / "_base.nft").read_text()
            + (PROFILES_DIR / f"{profile}.nft").read_text())


def load(profile: str, lan: str, wan: str, prefix: Sequence[str] = ()) -> None:
    """Replace the firewall's ruleset with ``profile`` (``prefix``: e.g. ``ip netns exec gw``)
    and forget the flows the old one admitted: a stateful firewall lets *established* flows
    through whatever the new rules say, so without this a profile change would not apply to
    them."""
    with contextlib.suppress(LabError):
        run(*prefix, "nft", "flush", "ruleset")
    run(*prefix, "nft", "-f", "-", stdin=ruleset(profile, lan, wan))
    run(*prefix, "conntrack", "-F")


def set_udp_timeout(seconds: int, prefix: Sequence[str] = ()) -> None:
    """The UDP pinhole lifetime (seed: "usually closed after 30 seconds")."""
    run(*prefix, "nft", "list", "tables")  # conntrack's sysctls appear once it is in use
    for key in UDP_TIMEOUT_KEYS:
        run(*prefix, "sysctl", "-qw", f"{key}={seconds}")


def refresh_on_outbound_only(seconds: int, lan: str, wan: str,
                             prefix: Sequence[str] = ()) -> None:
    """Make UDP pinholes live ``seconds`` after the last packet *from inside*.

    Linux conntrack refreshes a flow on packets in either direction; some firewalls
    refresh it only on outbound packets, so a participant who only listens loses its
    pinhole however much media comes in. A dynamic set keyed by the inside flow
    (refreshed by ``update`` on every outbound packet) admits inbound UDP only while
    the flow's entry lives; ``load`` (a new profile) removes it.
    """
    script = (
        f'define LAN = "{lan}"\ndefine WAN = "{wan}"\n'
        "table inet pinhole_outbound_refresh {\n"
        "    set pinholes { type ipv4_addr . inet_service . ipv4_addr . inet_service;\n"
        f"        flags dynamic, timeout; timeout {seconds}s; }}\n"
        "    counter expired {}\n"
        "    chain forward {\n"
        "        type filter hook forward priority filter - 1; policy accept;\n"
        "        iifname $LAN meta l4proto udp update @pinholes "
        f"{{ ip saddr . udp sport . ip daddr . udp dport timeout {seconds}s }}\n"
        "        iifname $WAN meta l4proto udp ip daddr . udp dport . ip saddr . udp sport "
        "!= @pinholes counter name expired drop\n"
        "    }\n"
        "}\n")
    run(*prefix, "nft", "-f", "-", stdin=script)


def interfaces(lan_subnet: str = ENT_SUBNET) -> tuple[str, str]:
    """(enterprise-side, internet-side) interface names: the one with an address in
    ``lan_subnet``, and the other one with an IPv4 address."""
    net = ipaddress.ip_network(lan_subnet)
    lan = wan = ""
    for link in json.loads(run("ip", "-j", "-4", "addr", "show")):
        for info in link.get("addr_info", []):
            if link["ifname"] == "lo":
                continue
            if ipaddress.ip_address(info["local"]) in net:
                lan = link["ifname"]
            else:
                wan = link["ifname"]
    if not lan or not wan:
        raise LabError(f"the firewall needs one interface in {lan_subnet} and one outside it; "
                       f"found enterprise={lan or 'none'} internet={wan or 'none'}")
    return lan, wan


def serve(profile: str, udp_timeout_s: int, lan_subnet: str = ENT_SUBNET) -> int:
    """The compose ``firewall`` service: forward, NAT, filter; stay up until SIGTERM."""
    lan, wan = interfaces(lan_subnet)
    forwarding = Path("/proc/sys/net/ipv4/ip_forward")
    if forwarding.read_text().strip() != "1":
        try:
            forwarding.write_text("1")
        except OSError:
            raise LabError("IP forwarding is off and /proc/sys is read-only here; set "
                           "sysctls: net.ipv4.ip_forward: 1 on the firewall service") from None
    load(profile, lan, wan)
    try:
        set_udp_timeout(udp_timeout_s)
        timeout: int | str = udp_timeout_s
    except LabError:  # a container's /proc/sys is read-only: the kernel default stays
        timeout = "kernel default (/proc/sys is read-only)"
    print(json.dumps({"firewall": profile, "enterprise": lan, "internet": wan,
                      "udp_timeout_s": timeout}), flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    with contextlib.suppress(LabError):
        run("nft", "flush", "ruleset")
    return 0


def parser() -> Parser:
    p = Parser(
        prog="pinhole-lab firewall",
        description="The enterprise firewall of docker-compose.yml: load a profile's "
        "nftables ruleset (NAT + stateful filter) and stay up until stopped. Needs NET_ADMIN.")
    p.add_argument("--firewall-profile", "--profile", dest="profile", default="open",
                   choices=list(PROFILES), help="firewall profile (lab/profiles/<profile>.nft)")
    p.add_argument("--udp-timeout-s", type=UDP_TIMEOUT_S, default=30,
                   help="conntrack UDP timeout: how long an idle UDP pinhole stays open")
    p.add_argument("--lan-subnet", default=ENT_SUBNET,
                   help="the enterprise network; the other interface faces the internet")
    p.add_argument("--hybrid-node", default="",
                   help="the hybrid node's service, when there is one (docker-compose.hybrid.yml "
                   "sets it); the hybrid profiles refuse to start without it")
    return p


def missing_hybrid_node(profile: str, hybrid_node: str) -> str | None:
    """Why ``profile`` cannot start without a hybrid node, or ``None``: a hybrid profile lets
    media out only through the hybrid node, so without one every client would fail, later
    and less clearly."""
    if profile not in HYBRID_PROFILES or hybrid_node:
        return None
    return (f"the profile {profile!r} sends media only to the hybrid node, and this stack has "
            "none: add its service, docker compose -f docker-compose.yml -f "
            "docker-compose.hybrid.yml up")


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    apply_environment(p, os.environ)
    args = p.parse_args(argv)
    if args.profile not in PROFILES:  # before anything else: a typo must not start a firewall
        print(f"pinhole-lab firewall: there is no profile {args.profile!r} "
              f"(PINHOLE_FIREWALL_PROFILE or --firewall-profile); choose one of "
              f"{', '.join(PROFILES)}", file=sys.stderr)
        return 2
    missing = missing_hybrid_node(args.profile, args.hybrid_node)
    if missing:
        print(f"pinhole-lab firewall: {missing}", file=sys.stderr)
        return 2
    try:
        return serve(args.profile, args.udp_timeout_s, args.lan_subnet)
    except LabError as exc:
        print(f"pinhole-lab firewall: {exc}", file=sys.stderr)
        return 2
