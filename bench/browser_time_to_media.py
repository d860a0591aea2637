"""Time to media for a browser: from the join page's offer to its first decoded video frame,
through the firewall lab's profiles (``open``, ``no-udp``, ``tls-only`` by default).

One firewall lab (network namespaces, NAT, nftables: needs root) with the cloud, the three
media nodes and coturn (TURN over TLS on 198.18.0.253:443) in ``inet``; or, with
``--run-id``, a lab that is up (``pinhole-lab netns up --stack``). Every browser is
Debian's ``chromium-headless-shell`` with its fake camera and microphone, run in the
enterprise namespace (``ip netns exec``) and driven over its DevTools pipe.

For each profile a speaker browser opens the join page (``pinhole join-link``) and stays in
the meeting. Then ``--runs`` listeners, one after another, each a new device in a browser
already started, open the page; each times, on the page's own clock, from navigation and
from the start of its offer (``POST /v1/meetings/{id}/webrtc``) to the first video frame it
decoded (ICE checks, the DTLS handshake and the first keyframe included). The selected
candidate pair (``getStats``, as the page's panel shows it) says which path ICE chose.

JSON on stdout (median, min and max per profile), progress on stderr; ``--panel`` also
prints each listener's panel, as the page shows it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lab.netns import PROFILES, Lab, lab
from lab.stack import REGIONS
from tests.browser import BrowserError, Page, headless_page
from wire.tls import spki_pin

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ("open", "no-udp", "tls-only")
#: Chromium's fake camera (a moving pattern) and microphone, allowed without a prompt
FAKE_MEDIA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
#: the lab's nodes stand in for distance: the cloud places a page on the least loaded one
SIMULATED_RTT_MS = {spec.id: spec.simulated_rtt_ms for spec in REGIONS}
FRAME_TIMEOUT_S = 30.0
LINK_TIMEOUT_S = 60.0
#: the page's first decoded video frame, by polling its peer connection's getStats (the page
#: samples once a second); times on the page's clock: navigation start is 0
FIRST_FRAME = """(async () => {
  const deadline = performance.now() + %d;
  while (performance.now() < deadline) {
    if (typeof pc !== "undefined" && pc) {
      const report = await pc.getStats();
      for (const s of report.values()) {
        if (s.type === "inbound-rtp" && s.kind === "video" && s.framesDecoded > 0) {
          const offer = performance.getEntriesByType("resource").find(
            (e) => e.name.endsWith("/webrtc"));
          return {frame: performance.now(), offer: offer ? offer.startTime : null};
        }
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return null;
})()"""
#: the page's panel as text: the summary, the selected pair, the candidate pairs
PANEL = """(() => {
  const rows = (id) => [...document.querySelectorAll(`#${id} tr`)].map(
    (tr) => [...tr.cells].map((c) => c.textContent.trim()));
  const summary = [...document.querySelectorAll("#summary dt")].map(
    (dt) => [dt.textContent, dt.nextElementSibling.textContent]);
  return {summary, selected: rows("selected"), pairs: rows("pairs")};
})()"""


class BenchError(Exception):
    """A join link, a browser or a page failed; the message says which and why."""


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def trusted_keys(state_dir: Path) -> str:
    """``--ignore-certificate-errors-spki-list``: the cloud's key, and coturn's when the stack
    runs it (the browser trusts these two, nothing else)."""
    pems = [state_dir / "cloud.pem", state_dir / "turn.pem"]
    return ",".join(spki_pin(p.read_bytes()).removeprefix("sha256/") for p in pems
                    if p.exists())


def join_link(fw: Lab, stack_json: Path, meeting: str, name: str, create: bool = False,
              proxy: str | None = None) -> str:
    """``pinhole join-link`` in the enterprise namespace, a new device each time (through
    the HTTP ``proxy``, ``http://host:port``, if given)."""
    argv = [*fw.exec_prefix(fw.ent), sys.executable, "-m", "client", "--stack",
            str(stack_json), "--no-cache", "--json", *(["--proxy", proxy] if proxy else []),
            "--name", name, "join-link",
            "--meeting", meeting, *(["--create"] if create else [])]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False,
                              timeout=LINK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BenchError(f"join-link for {name}: no answer in {LINK_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise BenchError(f"join-link for {name}: {lines[-1] if lines else done.returncode}")
    url: str = json.loads(done.stdout)["url"]
    return url


def browser(fw: Lab, stack_json: Path,
            proxy: str | None = None) -> contextlib.AbstractAsyncContextManager[Page]:
    """A headless Chromium in the enterprise namespace, with the fake camera; with ``proxy``
    (``http://host:port``) it takes every connection through that HTTP proxy, the page's
    and WebRTC's TCP and TLS ones (TURN included) alike."""
    flags = (f"--proxy-server={proxy}",) if proxy else ()
    return headless_page(trust_spki=trusted_keys(stack_json.parent),
                         extra_args=(*FAKE_MEDIA, *flags), wrapper=fw.exec_prefix(fw.ent))


async def first_frame(page: Page, timeout_s: float = FRAME_TIMEOUT_S) -> dict[str, float]:
    """Milliseconds from navigation (``navigation_ms``) and from the start of the offer's
    request (``offer_ms``) to the page's first decoded video frame."""
    seen = await page.evaluate(FIRST_FRAME % int(timeout_s * 1000))
    if not seen:
        state = await page.evaluate("JSON.stringify({state: window.pinhole.state, "
                                    "error: window.pinhole.error})")
        raise BenchError(f"no video frame decoded within {timeout_s:.0f} s ({state})")
    offer = seen["offer"] if seen["offer"] is not None else 0.0
    return {"navigation_ms": round(seen["frame"], 1), "offer_ms": round(seen["frame"] - offer, 1)}


async def state(page: Page) -> dict[str, Any]:
    """``window.pinhole`` once its stats name a selected pair."""
    await page.wait_for("window.pinhole.stats && window.pinhole.stats.selectedPair",
                        timeout_s=FRAME_TIMEOUT_S)
    value: dict[str, Any] = await page.evaluate("JSON.parse(JSON.stringify(window.pinhole))")
    return value


def describe(candidate: dict[str, Any], where: bool = True) -> str:
    """``relay udp via tls 198.18.0.253:61000``: a candidate as the panel names it (without
    ``where``: its kind alone, ``relay udp via tls``)."""
    via = f" via {candidate['relayProtocol']}" if candidate.get("relayProtocol") else ""
    address = candidate["address"] or "(hidden)"
    kind = f"{candidate['type']} {candidate['protocol']}{via}"
    return f"{kind} {address}:{candidate['port']}" if where else kind


async def panel(page: Page) -> list[str]:
    """The page's connection panel as lines of text, as a person reads it."""
    await page.wait_for("document.querySelectorAll('#selected tr').length > 1",
                        timeout_s=FRAME_TIMEOUT_S)
    shown = await page.evaluate(PANEL)
    lines = [f"  {key}: {value}" for key, value in shown["summary"]]
    lines.append("  selected pair (" + " | ".join(shown["selected"][0][1:]) + "):")
    lines += ["    " + " ".join(row) for row in shown["selected"][1:]]
    lines.append("  candidate pairs (" + " | ".join(shown["pairs"][0]) + "):")
    lines += ["    " + " | ".join(row) for row in shown["pairs"][1:]]
    return lines


def _spread(samples: list[float]) -> dict[str, Any]:
    if not samples:
        return {"median_ms": None, "min_ms": None, "max_ms": None, "samples_ms": samples}
    return {"median_ms": round(statistics.median(samples), 1), "min_ms": min(samples),
            "max_ms": max(samples), "samples_ms": samples}


async def measure(fw: Lab, stack_json: Path, profile: str, runs: int,
                  show_panel: bool = False) -> dict[str, Any]:
    """A speaker's page, then ``runs`` listeners' pages, timed one after another."""
    fw.load_profile(profile)  # no flow admitted by the previous profile survives
    meeting = f"browser-{profile}-{secrets.token_hex(3)}"
    offer: list[float] = []
    navigation: list[float] = []
    failures: list[str] = []
    pairs: dict[str, int] = {}
    node = None
    async with browser(fw, stack_json) as speaker:
        await speaker.goto(join_link(fw, stack_json, meeting, "speaker", create=True))
        await speaker.wait_for("window.pinhole.state === 'connected' && window.pinhole.stats "
                               "&& window.pinhole.stats.framesEncoded > 0",
                               timeout_s=FRAME_TIMEOUT_S)
        for i in range(1, runs + 1):
            try:
                link = join_link(fw, stack_json, meeting, f"listener-{i}")
                async with browser(fw, stack_json) as page:
                    await page.goto(link)
                    timed = await first_frame(page)
                    seen = await state(page)
                    if show_panel:
                        _say(f"  the panel of listener-{i}:")
                        for line in await panel(page):
                            _say(line)
                    await page.evaluate("leave()")
            except (BenchError, BrowserError, TimeoutError) as exc:
                failures.append(f"listener-{i}: {exc}")
                _say(f"  run {i}: {exc}")
                continue
            chosen = seen["stats"]["selectedPair"]
            pair = f"{describe(chosen['local'])} -> {describe(chosen['remote'])}"
            kind = f"{describe(chosen['local'], where=False)} -> {describe(chosen['remote'])}"
            pairs[kind] = pairs.get(kind, 0) + 1
            node = seen["stats"]["join"]["node"]
            offer.append(timed["offer_ms"])
            navigation.append(timed["navigation_ms"])
            _say(f"  run {i}: first frame {timed['offer_ms']:.0f} ms after the offer "
                 f"({timed['navigation_ms']:.0f} ms after navigation) on {pair} ({node})")
    return {"pair": max(pairs, key=pairs.__getitem__) if pairs else None, "node": node,
            "node_simulated_rtt_ms": SIMULATED_RTT_MS.get(node or ""),
            "offer_to_frame": _spread(offer), "navigation_to_frame": _spread(navigation),
            "failures": failures}


@contextlib.contextmanager
def _lab(run_id: str | None, state_dir: Path | None) -> Iterator[tuple[Lab, Path]]:
    """The lab that is up (``run_id``), or a new one with its stack, torn down after."""
    if run_id:
        state = (state_dir or ROOT / "run" / f"lab-{run_id}").resolve()
        if not (state / "stack.json").exists():
            raise SystemExit(f"bench.browser_time_to_media: no {state / 'stack.json'}; "
                             "start the lab with pinhole-lab netns up --stack")
        yield Lab(run_id=run_id), state / "stack.json"
        return
    with tempfile.TemporaryDirectory(prefix="pinhole-bttm-") as tmp, lab("open") as fw:
        yield fw, fw.start_stack(Path(tmp) / "stack", progress=_say)  # stopped by teardown


async def run(profiles: list[str], runs: int, run_id: str | None = None,
              state_dir: Path | None = None, show_panel: bool = False) -> dict[str, Any]:
    """Every profile in one lab; a profile that fails says why and the others go on."""
    results: dict[str, Any] = {}
    with _lab(run_id, state_dir) as (fw, stack_json):
        for profile in profiles:
            _say(f"{profile}: a speaker's page, then {runs} timed listener page(s)")
            try:
                results[profile] = await measure(fw, stack_json, profile, runs, show_panel)
            except (BenchError, BrowserError, TimeoutError) as exc:
                _say(f"  {profile}: {exc}")
                results[profile] = {"error": str(exc)}
                continue
            _say(f"  {profile}: median {results[profile]['offer_to_frame']['median_ms']} ms "
                 "from the offer to the first frame")
    return {"benchmark": "browser_time_to_media",
            "what": "ms from a join page's offer (and from its navigation) to its first "
                    "decoded video frame from a speaker's page already in the meeting, "
                    "headless Chromium in the enterprise behind each firewall profile (ICE, "
                    "DTLS and the first keyframe included); pair: the selected candidate "
                    "pair; node: the one the cloud placed the meeting on (least loaded), with "
                    "the RTT the lab simulates to it",
            "runs": runs, "profiles": results}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.browser_time_to_media",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="timed listener pages per profile (3)")
    p.add_argument("--profiles", default=",".join(MEASURED),
                   help=f"comma-separated firewall profiles ({','.join(MEASURED)})")
    p.add_argument("--run-id", default=None,
                   help="use this lab, up with its stack (pinhole-lab netns up --stack), and "
                   "leave it up; each profile is loaded into it in turn")
    p.add_argument("--state-dir", type=Path, default=None,
                   help="with --run-id: the lab's state directory (default run/lab-RUNID)")
    p.add_argument("--panel", action="store_true",
                   help="print each listener's connection panel on stderr")
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
        raise SystemExit("bench.browser_time_to_media: needs root (network namespaces and "
                         "nftables)")
    for tool in ("ip", "nft", "conntrack", "turnserver", "chromium-headless-shell"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench.browser_time_to_media: needs {tool} (make system-deps, "
                             "as root)")
    print(json.dumps(asyncio.run(run(profiles, a.runs, a.run_id, a.state_dir, a.panel)),
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
