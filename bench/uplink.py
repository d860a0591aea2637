"""Media bytes on the enterprise's uplink: a local-only meeting against a mixed one.

Seed: a hybrid media node "saves bandwidth on the public internet uplink", and "If all the
meeting participants are located on the same network, media is not sent to Cisco
Collaboration Cloud". One firewall lab (root) with the ``hybrid`` profile: the cloud and the
media nodes on the internet side, ``pinhole-hybrid-node`` on the enterprise's hybrid host,
the gateway counting every byte that leaves the enterprise and is not signaling to the cloud
(nftables counter ``uplink_media``). Per scenario, ``--clients`` enterprise clients (the
HTTP proxy configured, as in the seed's hybrid scenario) register and probe first (not
counted: discovery is not media), then call for ``--seconds``; the
``mixed`` scenario adds one participant on the internet side, so the hybrid node cascades
out. JSON on stdout: uplink bytes (and per second) and what the clients sent; progress on
stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from lab.netns import PROXY_HOST, Lab, lab

ROOT = Path(__file__).resolve().parents[1]
PROXY_URL = f"http://{PROXY_HOST}:8888"


class BenchError(Exception):
    """A client failed; the message says which and why."""


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _pinhole(fw: Lab, stack_json: Path, name: str, inside: bool, *args: str
             ) -> subprocess.Popen[str]:
    """``pinhole`` as device ``name``; its identity and probe report cached next to the
    stack, so a call after ``probe`` does not probe again (discovery is not media)."""
    ns, proxy = (fw.ent, ["--proxy", PROXY_URL]) if inside else (fw.inet, [])
    cache = stack_json.parent / ("cache-ent" if inside else "cache-inet")
    return subprocess.Popen(
        [*fw.exec_prefix(ns), sys.executable, "-m", "client", "--stack", str(stack_json),
         "--cache-dir", str(cache), "--json", *proxy, "--name", name, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _done(proc: subprocess.Popen[str], what: str, timeout_s: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout_s)
    if proc.returncode != 0:
        lines = err.strip().splitlines()
        raise BenchError(f"{what}: {lines[-1] if lines else proc.returncode}")
    result: dict[str, Any] = json.loads(out)
    return result


def _scenario(fw: Lab, stack_json: Path, name: str, clients: int, seconds: float,
              remote: bool) -> dict[str, Any]:
    meeting = f"uplink-{name}-{secrets.token_hex(3)}"
    who = [(f"{name}-{i}", True) for i in range(clients)] + (
        [(f"{name}-remote", False)] if remote else [])
    for device, inside in who:  # register and probe first: not counted
        _done(_pinhole(fw, stack_json, device, inside, "probe"), f"{device} probe", 90)
    before = fw.counter("uplink_media", "bytes")
    calls = [_pinhole(fw, stack_json, device, inside, "call", "--meeting", meeting,
                      "--create", "--seconds", str(seconds)) for device, inside in who]
    results = [_done(call, device, seconds + 90) for call, (device, _) in zip(
        calls, who, strict=True)]
    uplink = fw.counter("uplink_media", "bytes") - before
    local = results[:clients]
    return {"participants": len(results), "remote": remote,
            "nodes": sorted({r["node"] for r in results}),
            "transports": sorted({r["transport"] for r in results}),
            "uplink_media_bytes": uplink,
            "uplink_media_bytes_per_s": round(uplink / seconds, 1),
            "enterprise_media_bytes_sent": sum(r["bytes_sent"] for r in local),
            "packets_received": [r["packets_received"] for r in results]}


def run(clients: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pinhole-uplink-") as tmp, lab("hybrid") as fw:
        state = Path(tmp) / "stack"
        stack_json = fw.start_stack(state, progress=_say)  # all stopped by the teardown
        fw.start_proxy()
        fw.start_hybrid(state, progress=_say)
        scenarios: dict[str, Any] = {}
        for name, remote in (("local-only", False), ("mixed", True)):
            _say(f"{name}: {clients} enterprise client(s)"
                 f"{' + 1 on the internet side' if remote else ''}, {seconds:g} s")
            try:
                scenarios[name] = _scenario(fw, stack_json, name, clients, seconds, remote)
            except BenchError as exc:
                _say(f"  {exc}")
                scenarios[name] = {"error": str(exc)}
                continue
            _say(f"  uplink media bytes: {scenarios[name]['uplink_media_bytes']}")
    return {"benchmark": "uplink",
            "what": "bytes leaving the enterprise other than signaling to the cloud, during a "
                    "meeting on the hybrid node: all participants inside (local-only) and "
                    "one participant on the internet side (mixed: one cascade out)",
            "clients": clients, "seconds": seconds, "scenarios": scenarios}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=2, help="enterprise clients (2)")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each call (5)")
    p.add_argument("--json", action="store_true", help="JSON only (it is always JSON on stdout)")
    a = p.parse_args(argv)
    if a.clients < 1 or a.seconds <= 0:
        p.error("--clients must be at least 1 and --seconds positive")
    if os.geteuid() != 0:
        raise SystemExit("bench.uplink: needs root (network namespaces and nftables)")
    for tool in ("ip", "nft", "conntrack", "tinyproxy"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench.uplink: needs {tool} (make system-deps, as root)")
    print(json.dumps(run(a.clients, a.seconds), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
