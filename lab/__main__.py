"""pinhole-lab: run Pinhole - the loopback stack and the demo (no root), and the firewall
lab of network namespaces and nftables (root). Every flag also reads PINHOLE_<FLAG>.

Exit codes: 0 done, 1 other failure (the smoke meeting or demo failed), 2 usage or
set-up (a flag, a file, or a prerequisite such as root)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import uvloop

from edge import boundary
from edge.boundary import ExitCode, Failure, run
from edge.flags import Number, Parser, add_version, apply_environment, count, seconds
from lab import firewall
from lab.firewall import UDP_TIMEOUT_S
from lab.netns import (
    HYBRID_HOST,
    HYBRID_HOST_2,
    HYBRID_ID,
    INET_PREFIX,
    PROFILES,
    PROXY_HOST,
    Lab,
    LabError,
)
from lab.pki import ORG, read_pki, renew, renewal_reason, write_pki, write_secret

# The stack, compose, the smoke meeting and the demo are imported by the commands that
# run them: they bring the client, aiohttp and pydantic, which 'netns run' (a wrapper
# around every command a lab's reader types) and 'firewall' never need.


async def _stack(state_dir: Path, prefix: str | None, store: str, replicas: int,
                 hybrid: bool = False, sentinel: bool = False) -> int:
    if replicas > 1 and store == "memory":
        print("pinhole-lab stack: --replicas needs a shared store: add --store redis",
              file=sys.stderr)
        return 2
    if sentinel and store != "redis":
        print("pinhole-lab stack: --sentinel runs the stack's own Redis with a replica and "
              "three Sentinels: add --store redis", file=sys.stderr)
        return 2
    from lab.stack import HYBRID, REGIONS, running_stack

    nodes = (*REGIONS, HYBRID) if hybrid else REGIONS
    turn = shutil.which("turnserver") is not None  # TURN over TLS for browsers (coturn)
    if not turn:
        print("no coturn here: browsers get no TURN relay (as root: apt-get install coturn)",
              flush=True)
    async with running_stack(nodes, state_dir=state_dir, progress=print, prefix=prefix,
                             store=store, replicas=replicas, turn=turn,
                             sentinel=sentinel) as stack:
        print(json.dumps(stack.describe(), indent=2), flush=True)
        print(f"operator token (the dashboard and other operator pages): "
              f"{stack.operator_token}", flush=True)
        print("stack running; Ctrl-C stops it", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    return 0


#: ``netns up --hybrid-cluster``'s nodes (without it: the first alone)
CLUSTER_HOSTS = ((HYBRID_ID, HYBRID_HOST), (HYBRID_ID + "-2", HYBRID_HOST_2))


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
                state = (args.state_dir or Path("run") / f"lab-{fw.run_id}").resolve()
                up["stack_json"] = str(fw.start_stack(state, _say))
                if fw.profile.startswith("hybrid"):  # the profile's in-house node(s)
                    hosts = CLUSTER_HOSTS if args.hybrid_cluster else CLUSTER_HOSTS[:1]
                    extra = ("--cluster", "hq", "--capacity", "2") if args.hybrid_cluster \
                        else ()
                    nodes = []
                    for node_id, host in hosts:
                        info = fw.start_hybrid(state, *extra, progress=_say, node_id=node_id,
                                               host=host)
                        nodes.append({"id": info["node_id"], "address": host})
                    up["hybrid_node"] = nodes[0]
                    if args.hybrid_cluster:
                        up["hybrid_nodes"] = nodes
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
    # exec, not a child: the command is this process, so a signal (Ctrl-C, ``kill -INT``
    # of a background job) reaches it alone and it hangs up as it would outside the lab
    argv = [*fw.exec_prefix(side), *command]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"pinhole-lab: cannot run {argv[0]}: {exc.strerror or exc} (the lab needs "
              "iproute2)", file=sys.stderr)
        return 2


def _pki(args: argparse.Namespace) -> int:
    """Write a PKI, or keep the one there (a restarted deployment keeps its keys) unless a
    certificate is about to expire or names other names: then renew it."""
    stack_json = args.out / "stack.json"
    now = datetime.datetime.now(datetime.UTC)
    reason = None
    if stack_json.exists() and not args.force:
        reason = renewal_reason(args.out, args.name, now)
        try:
            pki = renew(args.out, args.name, now) if reason else read_pki(args.out)
            action = "renewed" if reason else "kept"
        except (OSError, ValueError, StopIteration) as exc:
            reason, action = f"the PKI in {args.out} is not whole ({exc})", "created"
            pki = write_pki(args.out, args.name, now)
    else:
        pki, action = write_pki(args.out, args.name, now), "created"
    _say(f"pki: {action} in {args.out}" + (f": {reason}" if reason else "")
         + ("" if action != "kept" else " (--force makes a new one)"))
    # it carries the org's enrollment key: 0600 from the first byte
    write_secret(stack_json, json.dumps(pki.stack_json(args.cloud_url), indent=2))
    out: dict[str, object] = {"pki": str(args.out), "action": action, "reason": reason,
                              "ca": str(pki.ca_file), "names": args.name,
                              "stack_json": str(stack_json), "pins": list(pki.pins),
                              "operator_token_file": str(pki.operator_token_file)}
    if args.public_url:  # what a host needs: the CA, and a stack.json beside it
        public = args.out / "public"
        public.mkdir(exist_ok=True)
        (public / "ca.pem").write_text(pki.ca_file.read_text())
        doc = {**pki.stack_json(args.public_url), "ca": "ca.pem"}  # beside stack.json
        write_secret(public / "stack.json", json.dumps(doc, indent=2))
        out["public"] = str(public)
    print(json.dumps(out), flush=True)
    return 0


def _compose(args: argparse.Namespace) -> int:
    from lab import compose, smoke

    env = {"PINHOLE_FIREWALL_PROFILE": args.profile}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"pinhole-lab compose: --env wants KEY=VALUE, not {item!r}", file=sys.stderr)
            return 2
        env[key] = value
    with contextlib.ExitStack() as cleanup:
        state = args.state_dir or Path(cleanup.enter_context(
            tempfile.TemporaryDirectory(prefix="pinhole-compose-")))
        try:
            files = args.file or compose.files_for(args.profile)
            project = compose.load([Path(f).resolve() for f in files], env)
        except LabError as exc:
            print(f"pinhole-lab compose: {exc}", file=sys.stderr)
            return 2
        run = compose.ComposeRun(project, state.resolve(), progress=_say)
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # teardown on SIGTERM too
        try:
            _say(f"run {run.run_id}: {len(project.services)} services on "
                 f"{', '.join(f'{n} {s}' for n, s in project.networks.items())}")
            run.create()
            run.up(args.timeout_s)
            clients = run.smoke_results()
            report = {
                "run_id": run.run_id, "profile": args.profile,
                "services": {s.name: {"namespace": run.ns(s.name), "addresses": s.networks}
                             for s in project.services.values()},
                "clients": clients,
                "smoke": {name: run.result(name) for name in run.smoke_services},
                "ok": smoke.verdict(clients)
                and all(run.result(n)["exit_code"] == 0 for n in run.smoke_services),
            }
            if args.keep_running:
                _say("services running; Ctrl-C stops them")
                signal.pause()
        except LabError as exc:
            print(f"pinhole-lab compose: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130
        finally:
            _say(f"stopping run {run.run_id}")
            run.down()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, c in clients.items():
            print(smoke.line(name, c))
        print("smoke meeting: " + ("ok" if report["ok"] else "FAILED"))
    return 0 if report["ok"] else 1


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="pinhole-lab", description=__doc__)
    add_version(p)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("stack", help="run a cloud and three regional media nodes on loopback")
    s.add_argument("--state-dir", type=Path, default=Path("run/stack"),
                   help="where certificates, logs and stack.json go (default run/stack)")
    s.add_argument("--prefix", default=None,
                   help="first three octets for the cloud (.1) and nodes (.2-.4), e.g. "
                   "198.18.0 inside the firewall lab (default: a free 127.x.y block)")
    s.add_argument("--hybrid", action="store_true",
                   help=f"also run {HYBRID_ID}, a hybrid media node of org {ORG} (.5)")
    s.add_argument("--store", default="memory",
                   help="memory (default), redis (a redis-server the stack starts) or a "
                   "redis://host:port/db URL")
    s.add_argument("--sentinel", action="store_true",
                   help="with --store redis: also a Redis replica and three Sentinels; the "
                   "cloud finds the primary through them and survives its loss")
    s.add_argument("--replicas", type=count(high=16), default=1,
                   help="cloud processes on the shared store, behind HAProxy (TLS passed "
                   "through, /readyz checked) that owns the cloud's address (needs --store "
                   "redis)")
    d = sub.add_parser("demo", help="stack + a scripted two-party meeting, narrated")
    d.add_argument("--seconds", type=Number(float, 0, 3600, above=True), default=3.0,
                   help="how long the parties talk")
    d.add_argument("--json", action="store_true", help="one JSON document on stdout")
    d.add_argument("--state-dir", type=Path, default=None,
                   help="keep each act's certificates, logs and stack.json under DIR/open and "
                   "DIR/no-udp (default: a temporary directory)")
    n = sub.add_parser("netns", help="the firewall lab (root): namespaces, NAT, nftables")
    n.add_argument("action", choices=["up", "down", "profile", "run"],
                   help="up: create (prints the run id); down: remove; profile: load another "
                   "ruleset; run: a command inside a namespace")
    n.add_argument("--run-id", help="the lab to act on (printed by 'up')")
    n.add_argument("--firewall-profile", "--profile", dest="profile", default="open",
                   choices=list(PROFILES),
                   help="firewall profile (lab/profiles/<profile>.nft)")
    n.add_argument("--udp-timeout-s", type=UDP_TIMEOUT_S, default=30,
                   help="the gateway's conntrack UDP timeout: how long an idle UDP pinhole "
                   "stays open")
    n.add_argument("--with-stack", "--stack", dest="stack", action="store_true",
                   help="up: also start the cloud and three media nodes in the internet "
                   "namespace (stack.json in --state-dir); with a hybrid profile also the "
                   "hybrid node on the enterprise's hybrid host")
    n.add_argument("--hybrid-cluster", action="store_true",
                   help="up --stack with a hybrid profile: a cluster of two small hybrid nodes "
                   "instead (hybrid-acme on 10.99.0.4, hybrid-acme-2 on 10.99.0.5, cluster "
                   "hq, 2 legs each: a full node's meeting goes on on the other)")
    n.add_argument("--state-dir", type=Path, default=None,
                   help="up --stack: where stack.json and the logs go (default run/lab-RUNID)")
    n.add_argument("--with-proxy", "--proxy", dest="proxy", action="store_true",
                   help="up: also start tinyproxy on the enterprise proxy host (10.99.0.3:8888)")
    n.add_argument("--side", default="ent", choices=["ent", "gw", "inet"],
                   help="where 'run' runs the command given after -- (default: enterprise)")
    k = sub.add_parser("pki", help="write a development CA, the cloud's certificate, the "
                       "org's enrollment key, the node secret, the TURN secret and stack.json "
                       "into a directory")
    k.add_argument("--out", type=Path, required=True, help="directory (created if missing)")
    k.add_argument("--cloud-url", required=True, help="the cloud URL clients use (stack.json)")
    k.add_argument("--cert-name", "--name", dest="name", action="append", required=True,
                   help="a DNS name or IP address for the cloud's certificate; repeatable")
    k.add_argument("--public-url", default=None,
                   help="also write public/ca.pem and public/stack.json for this cloud URL "
                   "(the cloud as the host reaches it, e.g. https://localhost:8443)")
    k.add_argument("--force", action="store_true",
                   help="replace an existing PKI (without it, an existing one is kept, and "
                   "renewed when a certificate expires within 7 days or names other names)")
    sub.add_parser("firewall", add_help=False,
                   help="the enterprise firewall service of docker-compose.yml (see --help)")
    sub.add_parser("turn", add_help=False,
                   help="the TURN server of docker-compose.yml: coturn on the stack's PKI "
                   "(see --help)")
    sub.add_parser("smoke", add_help=False,
                   help="the smoke meeting of docker-compose.yml: run a client's call, or wait "
                   "for the clients' results (see --help)")
    c = sub.add_parser("compose", help="run docker-compose.yml's services in network "
                       "namespaces (root, no Docker engine) and a smoke meeting")
    c.add_argument("--file", type=Path, action="append", default=[],
                   help="a compose file, repeatable like docker compose -f (default: the "
                   "repository's docker-compose.yml, and docker-compose.hybrid.yml for the "
                   "hybrid profiles)")
    c.add_argument("--firewall-profile", "--profile", dest="profile", default="open",
                   choices=list(PROFILES),
                   help="firewall profile (PINHOLE_FIREWALL_PROFILE for the file)")
    c.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="another variable for the file, e.g. "
                   "PINHOLE_CLIENT_PROXY=http://proxy:8888; repeatable")
    c.add_argument("--state-dir", type=Path, default=None,
                   help="where volumes and service logs go (default: a temporary directory)")
    c.add_argument("--timeout-s", type=seconds(86400), default=180.0,
                   help="give up when the services are not done after this long")
    c.add_argument("--keep-running", action="store_true",
                   help="after the smoke meeting, keep the services up until Ctrl-C")
    c.add_argument("--json", action="store_true", help="one JSON document on stdout")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The error boundary: a failure is one line (JSON too with --json), never a traceback."""
    raw = list(sys.argv[1:] if argv is None else argv)
    return run("pinhole-lab", lambda: _main(raw), as_json=lambda: "--json" in raw,
               out=sys.stdout, err=sys.stderr, translate=_translate,
               traceback_wanted=boundary.traceback_wanted(os.environ))


def _translate(exc: BaseException) -> Failure | None:
    from lab.stack import StackError

    if isinstance(exc, (LabError, StackError)):
        return Failure(ExitCode.USAGE, "lab", str(exc), "the log files it names say more")
    return None


def _main(raw: list[str]) -> int:
    if raw[:1] == ["firewall"]:
        return firewall.main(raw[1:])
    if raw[:1] == ["smoke"]:
        from lab import smoke

        return smoke.main(raw[1:])
    if raw[:1] == ["turn"]:
        from lab import turn_service

        return turn_service.main(raw[1:])
    p = _parser()
    apply_environment(p, os.environ)
    command = raw[raw.index("--") + 1:] if "--" in raw else []  # netns run … -- COMMAND
    args = p.parse_args(raw[:raw.index("--")] if "--" in raw else raw)
    args.argv = command
    if args.command == "netns":
        return _netns(args)
    if args.command == "pki":
        return _pki(args)
    if args.command == "compose":
        return _compose(args)
    if args.command == "stack":
        return uvloop.run(_stack(args.state_dir, args.prefix, args.store, args.replicas,
                                 args.hybrid, args.sentinel))
    from lab import demo

    return uvloop.run(demo.run(args.seconds, as_json=args.json, state_dir=args.state_dir))


if __name__ == "__main__":
    sys.exit(main())
