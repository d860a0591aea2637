"""Time to media: from a client's join request to its first media packet, per firewall profile.

One firewall lab (network namespaces, NAT, nftables: needs root) with the
cloud and the three media nodes in ``inet``. For each profile, a speaker
(``pinhole call``, 50 SRTP packets per second) stays in a meeting; a warm-up
call, not counted, proves it latched and sending. Then ``--runs`` clients,
one after another, each a new device that registers and probes first, join
the meeting for a second. Each one times, from its join request on its own
monotonic clock (``pinhole call --json``: ``timings``), the join answer, the
latched leg and the first SRTP packet from the speaker it decrypted.

Two more cases per profile, the ones users meet:

- cold start: the same new devices, timed from their registration (register,
  probe, report, join, first media); target: probe timeout + 3 RTT;
- stale report: ``--runs`` devices probed while the firewall was ``open`` (UDP
  worked) and kept their report in a cache directory; then the profile is
  loaded and they join on the cached report (younger than the 2-hour TTL, so
  it still says UDP); target: first media within 1 RTT + 300 ms of the join.

And screen sharing's: the speaker also presents (``--share``: a synthetic screen, 2 frames
a second of 30 packets, on the content ladder, TCP 5004 first), so each timed call is also a
receiver of content; ``content`` gives, per profile, the rung its content leg took and the
time from its join request to the first whole frame it received (``pinhole call --json``:
``content.time_to_first_frame_ms``). Content goes on TCP even where audio and video go on
UDP (the seed's "Screen Sharing (in app) TCP 5004* 33434"), so the two times differ by more
than the race: the content leg opens once the floor is known, and waits for the next frame.

RTT is the call's own keepalive RTT. JSON on stdout (median, min and max per
profile and case, each with its target and whether every run met it),
progress on stderr. With a ``hybrid`` profile the lab also runs
``pinhole-hybrid-node`` on the enterprise's hybrid host, and its clients have
the HTTP proxy configured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lab.netns import PROFILES, PROXY_HOST, Lab, lab

ROOT = Path(__file__).resolve().parents[1]
PROXY_URL = f"http://{PROXY_HOST}:8888"  # tinyproxy on the enterprise's proxy host
#: Profiles whose clients have the enterprise's HTTP proxy configured (the hybrid ones: the
#: seed's "HTTP Proxy and Hybrid Media", where media "no longer needs to traverse the proxy").
PROXIED = ("proxy-only", "hybrid", "hybrid-tls-only")
SPEAKER_S = 600  # longer than any profile's runs: the speaker is stopped after them
WARM_UP_TRIES = 10
CALL_TIMEOUT_S = 60.0
STALE_MARGIN_MS = 300.0  # stale report: first media within 1 RTT + this
COLD_RTTS = 3  # cold start: within the probe timeout + this many RTTs
#: a timed call's length: the presenter's frames come twice a second, and the content leg
#: opens after the media leg, so a one-second call could end before its first frame
CALL_S = 3


class BenchError(Exception):
    """A client or the speaker failed; the message says which and why."""


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _client(fw: Lab, stack_json: Path, profile: str, *args: str,
            cache: Path | None = None) -> list[str]:
    """``pinhole … --json ARGS`` in the enterprise namespace: a new device, or ``cache``'s."""
    proxy = ["--proxy", PROXY_URL] if profile in PROXIED else []
    device = ["--no-cache"] if cache is None else ["--cache-dir", str(cache)]
    return [*fw.exec_prefix(fw.ent), sys.executable, "-m", "client", "--stack", str(stack_json),
            *device, "--json", *proxy, *args]


def _run(argv: list[str], name: str) -> dict[str, Any]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=CALL_TIMEOUT_S,
                              cwd=ROOT, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{name}: no result within {CALL_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise BenchError(f"{name}: {lines[-1] if lines else f'exit code {done.returncode}'}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _call(fw: Lab, stack_json: Path, profile: str, meeting: str, name: str,
          cache: Path | None = None) -> dict[str, Any]:
    """One short call; its ``pinhole call --json`` result."""
    argv = _client(fw, stack_json, profile, "--name", name, "call", "--meeting", meeting,
                   "--create", "--seconds", str(CALL_S), cache=cache)
    return _run(argv, name)


@contextlib.contextmanager
def _speaker(fw: Lab, stack_json: Path, profile: str, meeting: str,
             log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The participant everyone hears and whose screen everyone sees, in the meeting until
    the block ends."""
    argv = _client(fw, stack_json, profile, "--name", "speaker", "call", "--meeting", meeting,
                   "--create", "--share", "--seconds", str(SPEAKER_S))
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _warm_up(fw: Lab, stack_json: Path, profile: str, meeting: str,
             speaker: subprocess.Popen[bytes], log: Path) -> None:
    """Call until one call hears the speaker: then it is in the meeting, latched, sending."""
    last = "no call yet"
    for _ in range(WARM_UP_TRIES):
        if speaker.poll() is not None:
            raise BenchError(f"the speaker exited with code {speaker.returncode}: "
                             f"{log.read_text().strip()[-300:]}")
        try:
            result = _call(fw, stack_json, profile, meeting, "warm-up")
        except BenchError as exc:
            last = str(exc)
            continue
        if result["timings"]["first_media_ms"] is not None:
            return
        last = "warm-up: the call heard nothing"
    raise BenchError(f"the speaker was not heard after {WARM_UP_TRIES} calls ({last})")


def _ms(values: list[float], pick: Callable[[list[float]], float]) -> float | None:
    return round(float(pick(values)), 2) if values else None


def _stale_devices(fw: Lab, stack_json: Path, state: Path, profile: str,
                   runs: int) -> list[Path]:
    """``runs`` devices that probed while UDP worked (profile ``open``): their caches."""
    fw.load_profile("open")
    caches = []
    for i in range(1, runs + 1):
        cache = state / f"stale-{profile}-{i}"
        _run(_client(fw, stack_json, "open", "--name", f"stale-{i}", "probe", cache=cache),
             f"stale-{i} (probe)")
        caches.append(cache)
    return caches


def _case(samples: list[float], targets: list[float], failures: list[str]) -> dict[str, Any]:
    met = [s <= t for s, t in zip(samples, targets, strict=True)]
    return {"median_ms": _ms(samples, statistics.median), "min_ms": _ms(samples, min),
            "max_ms": _ms(samples, max), "target_median_ms": _ms(targets, statistics.median),
            "all_within_target": bool(met) and all(met) and not failures,
            "samples_ms": samples, "targets_ms": [round(t, 2) for t in targets],
            "failures": failures}


class _Content:
    """The timed calls' content legs: where each went, when its first frame came."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.where: Counter[str] = Counter()
        self.failures: list[str] = []

    def add(self, name: str, content: dict[str, Any]) -> None:
        first = content["time_to_first_frame_ms"]
        if content["role"] != "receiver" or first is None:
            why = content["refused"] or f"no frame received on {content['transport']}"
            self.failures.append(f"{name}: {why}")
            _say(f"  {name}: no content: {why}")
            return
        self.samples.append(first)
        self.where[content["transport"]] += 1
        _say(f"  {name}: content on {content['transport']}, first frame {first:.1f} ms "
             "after the join request")

    def summary(self) -> dict[str, Any]:
        return {"transport": self.where.most_common(1)[0][0] if self.where else None,
                "transports": dict(self.where),
                "median_ms": _ms(self.samples, statistics.median),
                "min_ms": _ms(self.samples, min), "max_ms": _ms(self.samples, max),
                "samples_ms": self.samples, "failures": self.failures}


def _measure(fw: Lab, stack_json: Path, profile: str, runs: int, state: Path) -> dict[str, Any]:
    """Stale devices probed on ``open``; then the speaker, the warm-up, and the timed calls."""
    stale_caches = _stale_devices(fw, stack_json, state, profile, runs)
    fw.load_profile(profile)  # no flow admitted by the previous profile survives
    if profile.startswith("hybrid"):  # the hybrid node on the hybrid host, after the reload
        fw.start_hybrid(stack_json.parent, progress=_say)
    else:
        fw.stop_hybrid()  # elsewhere the enterprise has none
    meeting = f"ttm-{profile}-{secrets.token_hex(3)}"
    log = state / f"speaker-{profile}.log"
    first: list[float] = []
    connect: list[float] = []
    join: list[float] = []
    failures: list[str] = []
    cold: list[float] = []
    cold_targets: list[float] = []
    stale: list[float] = []
    stale_targets: list[float] = []
    stale_failures: list[str] = []
    where: Counter[tuple[str, str]] = Counter()
    content = _Content()
    with _speaker(fw, stack_json, profile, meeting, log) as speaker:
        _warm_up(fw, stack_json, profile, meeting, speaker, log)
        for i in range(1, runs + 1):
            try:
                result = _call(fw, stack_json, profile, meeting, f"listener-{i}")
            except BenchError as exc:
                failures.append(str(exc))
                _say(f"  run {i}: {exc}")
                continue
            timings = result["timings"]
            if timings["first_media_ms"] is None:
                failures.append(f"listener-{i}: heard nothing")
                _say(f"  run {i}: heard nothing on {result['transport']}")
                continue
            content.add(f"listener-{i}", result["content"])
            first.append(timings["first_media_ms"])
            connect.append(timings["connect_ms"])
            join.append(timings["join_ms"])
            rtt = result["rtt_ms"] or 0.0
            cold.append(timings["first_media_from_start_ms"])
            cold_targets.append(timings["probe_timeout_ms"] + COLD_RTTS * rtt)
            where[result["transport"], result["node"]] += 1
            _say(f"  run {i}: {result['transport']} to {result['node']}: join "
                 f"{timings['join_ms']:.1f} ms, latched {timings['connect_ms']:.1f} ms, "
                 f"first media {timings['first_media_ms']:.1f} ms "
                 f"({timings['first_media_from_start_ms']:.0f} ms from registration)")
        for i, cache in enumerate(stale_caches, start=1):
            try:
                result = _call(fw, stack_json, profile, meeting, f"stale-{i}", cache=cache)
            except BenchError as exc:
                stale_failures.append(str(exc))
                _say(f"  stale {i}: {exc}")
                continue
            timings = result["timings"]
            if timings["first_media_ms"] is None or timings["report"] != "cache":
                stale_failures.append(f"stale-{i}: heard nothing or probed again "
                                      f"({timings['report']})")
                continue
            stale.append(timings["first_media_ms"])
            stale_targets.append((result["rtt_ms"] or 0.0) + STALE_MARGIN_MS)
            _say(f"  stale {i}: cached report, media on {result['transport']} after "
                 f"{timings['first_media_ms']:.1f} ms (plan {', '.join(result['plan'])})")
    transport, node = where.most_common(1)[0][0] if where else (None, None)
    return {"transport": transport, "node": node,
            "median_ms": _ms(first, statistics.median), "min_ms": _ms(first, min),
            "max_ms": _ms(first, max), "join_median_ms": _ms(join, statistics.median),
            "connect_median_ms": _ms(connect, statistics.median),
            "samples_ms": first, "failures": failures,
            "cold_start": _case(cold, cold_targets, failures),
            "stale_report": _case(stale, stale_targets, stale_failures),
            "content": content.summary()}


def run(profiles: list[str], runs: int) -> dict[str, Any]:
    """Every profile in one lab; a profile that fails says why and the others go on."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pinhole-ttm-") as tmp, lab("open") as fw:
        state = Path(tmp)
        stack_json = fw.start_stack(state / "stack", progress=_say)  # stopped by the teardown
        if set(PROXIED) & set(profiles):
            fw.start_proxy()
        for profile in profiles:
            _say(f"{profile}: a speaker, a warm-up call, then {runs} timed call(s)")
            started = time.monotonic()
            try:
                results[profile] = _measure(fw, stack_json, profile, runs, state)
            except BenchError as exc:
                _say(f"  {profile}: {exc}")
                results[profile] = {"error": str(exc)}
                continue
            _say(f"  {profile}: median {results[profile]['median_ms']} ms "
                 f"({time.monotonic() - started:.0f} s)")
    return {"benchmark": "time_to_media",
            "what": "ms from a client's join request to the first SRTP packet it decrypted "
                    "from a speaker already in the meeting, through each firewall profile of "
                    "the lab (median of the runs; join and latch medians too); cold_start: "
                    "from registration on (target probe timeout + 3 RTT); stale_report: a "
                    "report probed while UDP worked, cached, then the profile loaded (target "
                    "1 RTT + 300 ms); content: ms from the same join request to the first "
                    "whole frame of the speaker's shared screen, and the content leg's rung",
            "runs": runs, "profiles": results}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="timed calls per profile (5)")
    p.add_argument("--profiles", default=",".join(PROFILES),
                   help="comma-separated firewall profiles (all)")
    p.add_argument("--json", action="store_true", help="JSON only (it is always JSON on stdout)")
    a = p.parse_args(argv)
    profiles = [x for x in a.profiles.split(",") if x]
    unknown = [x for x in profiles if x not in PROFILES]
    if unknown or not profiles:
        p.error(f"unknown profile(s) {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(PROFILES)}")
    if a.runs < 1:
        p.error("--runs must be at least 1")
    if os.geteuid() != 0:
        raise SystemExit("bench.time_to_media: needs root (network namespaces and nftables)")
    for tool in ("ip", "nft", "conntrack",
                 *(["tinyproxy"] if set(PROXIED) & set(profiles) else [])):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench.time_to_media: needs {tool} (make system-deps, as root)")
    print(json.dumps(run(profiles, a.runs), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
