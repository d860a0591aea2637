"""The operator's console at ``/``: credential, content, and live updates in a real browser.

Pins down the dashboard's defects: ``/`` had no credential and no refresh, showed load
0.00 with live legs, no titles, ended meetings piling up, and "calls by transport" counting
only finished calls without saying so; then no event history, and a failed node still
showing its legs and load after failover. The browser test logs in with the operator token in
Debian's chromium-headless-shell and sees a participant appear while the page stays loaded
(no reload), and saves a screenshot (``PINHOLE_ARTIFACTS``, default ``run/artifacts``).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from client.device import Device
from lab.pki import ORG
from lab.stack import NodeSpec, Stack, running_stack
from tests.browser import headless_page
from tests.integration.calls import UNTIL_HUNG_UP_S, Party, pinhole_argv
from tests.waiting import until_async
from wire.models import ProbeResult, ReachabilityReport
from wire.tls import client_context, spki_pin
from wire.transports import RungName

pytestmark = pytest.mark.slow
#: the tests on the module's stack run on the module's event loop, where it runs
ON_THE_MODULE_STACK = pytest.mark.asyncio(loop_scope="module")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("PINHOLE_ARTIFACTS", ROOT / "run" / "artifacts"))
NODES = [NodeSpec("node-a", "eu-west", 0), NodeSpec("node-b", "us-east", 0)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One stack for the module's tests: each has its own caches, devices and meeting, reads
    the cloud's counters before and after, and none changes the cloud or its nodes (the
    test that kills a node has a stack of its own)."""
    async with running_stack(NODES, state_dir=tmp_path_factory.mktemp("console") / "stack") as s:
        yield s


@pytest.fixture
async def own_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """A stack for one test that kills a node."""
    async with running_stack(NODES, state_dir=tmp_path / "stack") as s:
        yield s


def _args(cache: Path, *args: str) -> list[str]:
    return ["--cache-dir", str(cache), *args]


def _until_hung_up(cache: Path, name: str, meeting: str) -> list[str]:
    """A ``--json`` call that talks until the test hangs it up."""
    return _args(cache, "--json", "--name", name, "call", "--meeting", meeting,
                 "--seconds", str(UNTIL_HUNG_UP_S))


async def _run(stack: Stack, cache: Path, *args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        *pinhole_argv(stack, *_args(cache, "--json", *args)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


async def _get(stack: Stack, path: str, **kwargs: Any) -> tuple[int, str, aiohttp.ClientResponse]:
    async with aiohttp.ClientSession() as http, http.request(
            kwargs.pop("method", "GET"), stack.cloud_url + path, ssl=client_context(stack.ca_file),
            allow_redirects=False, **kwargs) as response:
        return response.status, await response.text(), response


@ON_THE_MODULE_STACK
async def test_the_console_needs_the_operator_credential(stack: Stack) -> None:
    status, body, _ = await _get(stack, "/")
    assert status == 401 and "<form" in body and "Operator token" in body
    assert "node-a" not in body  # nothing of the cloud's state before logging in
    status, body, _ = await _get(stack, "/v1/console/state")
    assert status == 401 and json.loads(body)["error"] == "operator_required"
    status, _, _ = await _get(stack, "/v1/console/events")
    assert status == 401
    status, body, _ = await _get(stack, "/login", method="POST", data={"token": "guess"})
    assert status == 401 and "not the operator token" in body
    status, _, response = await _get(stack, "/login", method="POST",
                                     data={"token": stack.operator_token})
    assert status == 303 and response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Strict" in cookie
    assert stack.operator_token not in cookie
    status, body, _ = await _get(stack, "/v1/console/state",
                                 headers={"Authorization": f"Bearer {stack.operator_token}"})
    nodes = json.loads(body)["nodes"]
    assert status == 200 and {n["id"] for n in nodes} == {"node-a", "node-b"}
    for node in nodes:  # the data plane each node said it relays on, as its metrics say
        url = next(n["metrics_url"] for n in stack.nodes if n["id"] == node["id"])
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert f'pinhole_node_plane_info{{plane="{node["plane"]}"' in await response.text()


@ON_THE_MODULE_STACK
async def test_the_console_shows_titles_live_quality_and_forgets_ended_meetings(
        stack: Stack, tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {stack.operator_token}"}
    before = await _counts(stack)  # the module's earlier calls and meetings
    meeting = (await _run(stack, tmp_path / "c0", "meeting", "create", "--title",
                          "Weekly <b>sync</b>"))["meeting_id"]
    call = await Party.start(stack, *_until_hung_up(tmp_path / "alice", "alice", meeting))
    state: dict[str, Any] = {}

    async def reported() -> bool:  # an in-call report comes every 2 s
        state.update(json.loads((await _get(stack, "/v1/console/state", headers=auth))[1]))
        people = [p for m in state["meetings"] if m["id"] == meeting for p in m["participants"]]
        return bool(people) and people[0]["loss"] is not None

    await until_async(reported, "alice's first in-call report on the console", poll_s=0.1)
    [shown] = [m for m in state["meetings"] if m["id"] == meeting]
    assert shown["title"] == "Weekly <b>sync</b>" and shown["id"] == meeting
    [alice] = shown["participants"]
    assert alice["device"] == "alice" and alice["rung"] == "udp/5004"
    assert alice["loss"] == 0 and alice["jitter_ms"] is not None
    node = next(n for n in state["nodes"] if n["id"] == alice["node"])
    assert node["legs"] >= 1 and node["load"] > 0 and node["control"] == "connected"
    assert node["heartbeat_age_s"] is not None
    assert _udp(state)["live"] == before["live"] + 1
    await call.report()  # hung up: it leaves
    state = json.loads((await _get(stack, "/v1/console/state", headers=auth))[1])
    assert meeting not in {m["id"] for m in state["meetings"]}  # counted, not listed
    assert await _counts(stack) == {"ended_meetings": before["ended_meetings"] + 1,
                                    "calls": before["calls"] + 1, "live": before["live"],
                                    "ended": before["ended"] + 1}


def _udp(state: dict[str, Any]) -> dict[str, Any]:
    """The console's ladder row of UDP 5004."""
    return next(r for r in state["ladder"] if r["rung"] == "udp/5004")


async def _counts(stack: Stack) -> dict[str, int]:
    """What the console counts: meetings ended, finished calls on UDP 5004 (its quality
    table and its ladder row), and participants live on it."""
    auth = {"Authorization": f"Bearer {stack.operator_token}"}
    state = json.loads((await _get(stack, "/v1/console/state", headers=auth))[1])
    return {"ended_meetings": state["ended_meetings"],
            "calls": state["calls"].get("udp/5004", {}).get("calls", 0),
            "live": _udp(state)["live"], "ended": _udp(state)["ended"]}


@ON_THE_MODULE_STACK
async def test_a_participant_appears_live_in_a_real_browser(stack: Stack, tmp_path: Path) -> None:
    """Log in through the form, keep the page open, start a call: the participant shows up
    without a reload (a marker set on the page survives), from the page's own origin only."""
    pin = spki_pin((stack.state_dir / "cloud.pem").read_bytes()).removeprefix("sha256/")
    meeting = (await _run(stack, tmp_path / "c0", "meeting", "create", "--title",
                          "Quarterly review"))["meeting_id"]
    async with headless_page(trust_spki=pin) as page:
        await page.goto(stack.cloud_url + "/")
        assert await page.evaluate("document.title") == "Pinhole console: log in"
        await page.evaluate(
            f"document.querySelector('input[name=token]').value = "
            f"{json.dumps(stack.operator_token)}; document.querySelector('form').submit()")
        await page.wait_for("document.getElementById('live') && "
                            "document.getElementById('live').textContent === 'live'")
        assert await page.evaluate("document.title") == "Pinhole operator console"
        await page.evaluate("window.pinholeMarker = 'still the same page'")
        assert "node-a" in await page.evaluate("document.getElementById('nodes').innerText")
        call = await Party.start(stack, *_until_hung_up(tmp_path / "bob", "bob", meeting))
        try:
            await page.wait_for("[...document.querySelectorAll('td.participant')]"
                                ".some((c) => c.textContent === 'bob')")
            await page.wait_for("document.getElementById('meetings').innerText"
                                ".includes('%')")  # the first in-call quality report
            assert await page.evaluate("window.pinholeMarker") == "still the same page"
            text = await page.evaluate("document.body.innerText")
            assert "Quarterly review" in text and "udp/5004" in text
            origins = await page.evaluate(
                "performance.getEntriesByType('resource').map((e) => new URL(e.name).origin)")
            own = await page.evaluate("location.origin")
            assert stack.cloud_url.startswith(own) and set(origins) <= {own}  # nothing external
            shot = ARTIFACTS / "console.png"
            await page.screenshot(shot)
            assert shot.stat().st_size > 10_000
        finally:
            await call.report()


async def _logged_in(page: Any, stack: Stack) -> None:
    await page.goto(stack.cloud_url + "/")
    await page.evaluate(
        f"document.querySelector('input[name=token]').value = "
        f"{json.dumps(stack.operator_token)}; document.querySelector('form').submit()")
    await page.wait_for("document.getElementById('live') && "
                        "document.getElementById('live').textContent === 'live'")


async def test_the_history_and_a_down_node_render_in_a_real_browser(own_stack: Stack) -> None:
    """A join shows in the event history; node-a killed under it shows as DOWN with its leg
    moved to node-b, and the failover with its gap, without a reload."""
    stack = own_stack
    pin = spki_pin((stack.state_dir / "cloud.pem").read_bytes()).removeprefix("sha256/")
    device = Device(stack.api())
    await device.register(ORG, stack.enrollment_key, "frank")
    await device.api.put_reachability(ReachabilityReport(results=[
        ProbeResult(node_id="node-a", rung=RungName.UDP_5004, reachable=True, rtt_ms=1.0),
        ProbeResult(node_id="node-b", rung=RungName.UDP_5004, reachable=True, rtt_ms=50.0)]))
    try:
        async with headless_page(trust_spki=pin) as page:
            await _logged_in(page, stack)
            meeting = (await device.api.create_meeting(title="Failover drill")).id
            joined = await device.join(meeting)
            assert joined.node.id == "node-a"
            await page.wait_for("[...document.querySelectorAll('#history td.event')]"
                                ".some((c) => c.textContent.startsWith('frank joined'))")
            await page.evaluate("window.pinholeMarker = 'still the same page'")
            await stack.kill("node-a")
            row = "document.querySelector('#nodes tr[data-node=\"node-a\"]')"
            await page.wait_for(f"{row} && {row}.classList.contains('down') && "
                                f"{row}.innerText.includes('frank → node-b')")
            text = await page.evaluate(f"{row}.innerText")
            assert "DOWN" in text and "legs moved" in text and " %" not in text  # no load
            history = await page.evaluate("document.getElementById('history').innerText")
            assert "frank moved from node-a to node-b" in history and " s" in history
            assert await page.evaluate("window.pinholeMarker") == "still the same page"
            shot = ARTIFACTS / "console-history.png"
            await page.screenshot(shot)
            assert shot.stat().st_size > 10_000
    finally:
        await device.close()
        await device.api.close()
