"""``pinhole-lab``: run Pinhole — the loopback stack and the demo (no root), and the firewall
lab of network namespaces and nftables (root)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop

from lab import demo
from lab.netns import INET_PREFIX, PROFILES, PROXY_HOST, Lab, LabError
from lab.stack import running_stack


async def _stack(state_dir: Path, prefix: str | None) -> int:
    async with running_stack(state_dir=state_dir, progress=print, prefix=prefix) as stack:
        print(json.dumps(stack.describe(), indent=2), flush=True)
        print("stack running; Ctrl-C stops it", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    return 0


def _say(line: str) -> None:
    """Progress goes to stderr; stdout stays one JSON document."""
    print(line, file=sys.stderr, flush=True)


def _netns(args: argparse.Namespace) -> int:
    if args.action == "up":
        fw = Lab(profile=args.profile, udp_timeout_s=args.udp_timeout_s,
                 **({"run_id": args.run_id} if args.run_id else {}))
        _say(f"creating namespaces {', '.join(fw.namespaces)}; firewall profile {fw.profile}")
        try:
            fw.up()
        except LabError as exc:
            print(f"pinhole-lab: {exc} (the lab needs root, iproute2 and nftables)",
                  file=sys.stderr)
            return 2
        up: dict[str, object] = {"run_id": fw.run_id, "namespaces": list(fw.namespaces),
                                 "profile": fw.profile, "stack_prefix": INET_PREFIX}
        try:
            if args.stack:
                state = args.state_dir or Path("run") / f"lab-{fw.run_id}"
                up["stack_json"] = str(fw.start_stack(state.resolve(), _say))
            if args.proxy:
                fw.start_proxy()
                up["proxy"] = f"http://{PROXY_HOST}:8888"
                _say(f"tinyproxy listening on {up['proxy']} in {fw.ent}")
        except LabError as exc:
            fw.down()
            print(f"pinhole-lab: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(up))
        return 0
    if not args.run_id:
        print("pinhole-lab: --run-id is required (printed by 'netns up')", file=sys.stderr)
        return 2
    fw = Lab(profile=args.profile, run_id=args.run_id)
    if args.action == "down":
        fw.down()
        return 0
    if args.action == "profile":
        fw.load_profile(args.profile)
        return 0
    side = {"ent": fw.ent, "gw": fw.gw, "inet": fw.inet}[args.side]
    command = args.argv
    if not command:
        print("pinhole-lab: 'netns run' needs a command after --", file=sys.stderr)
        return 2
    return subprocess.run([*fw.exec_prefix(side), *command], check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pinhole-lab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("stack", help="run a cloud and three regional media nodes on loopback")
    s.add_argument("--state-dir", type=Path, default=Path("run/stack"),
                   help="where certificates, logs and stack.json go (default run/stack)")
    s.add_argument("--prefix", default=None,
                   help="first three octets for the cloud (.1) and nodes (.2-.4), e.g. "
                   "198.18.0 inside the firewall lab (default: a free 127.x.y block)")
    d = sub.add_parser("demo", help="stack + a scripted two-party meeting, narrated")
    d.add_argument("--seconds", type=float, default=3.0, help="how long the parties talk")
    d.add_argument("--json", action="store_true", help="one JSON document on stdout")
    n = sub.add_parser("netns", help="the firewall lab (root): namespaces, NAT, nftables")
    n.add_argument("action", choices=["up", "down", "profile", "run"],
                   help="up: create (prints the run id); down: remove; profile: load another "
                   "ruleset; run: a command inside a namespace")
    n.add_argument("--run-id", help="the lab to act on (printed by 'up')")
    n.add_argument("--profile", default="open", choices=list(PROFILES),
                   help="firewall profile (lab/profiles/<profile>.nft)")
    n.add_argument("--udp-timeout-s", type=int, default=30,
                   help="the gateway's conntrack UDP timeout (seed: 30 s)")
    n.add_argument("--stack", action="store_true",
                   help="up: also start the cloud and three media nodes in the internet "
                   "namespace (stack.json in --state-dir)")
    n.add_argument("--state-dir", type=Path, default=None,
                   help="up --stack: where stack.json and the logs go (default run/lab-RUNID)")
    n.add_argument("--proxy", action="store_true",
                   help="up: also start tinyproxy on the enterprise proxy host (10.99.0.3:8888)")
    n.add_argument("--side", default="ent", choices=["ent", "gw", "inet"],
                   help="where 'run' runs the command given after -- (default: enterprise)")
    raw = list(sys.argv[1:] if argv is None else argv)
    command = raw[raw.index("--") + 1:] if "--" in raw else []  # netns run … -- COMMAND
    args = p.parse_args(raw[:raw.index("--")] if "--" in raw else raw)
    args.argv = command
    if args.command == "netns":
        return _netns(args)
    if args.command == "stack":
        return uvloop.run(_stack(args.state_dir, args.prefix))
    return uvloop.run(demo.run(args.seconds, as_json=args.json))


if __name__ == "__main__":
    sys.exit(main())
