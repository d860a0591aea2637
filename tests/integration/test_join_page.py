"""The browser join page (``/join/{meeting}#token=…``): a real Chromium in a Pinhole meeting.

Before, only Pinhole's client and aiortc could join: a person with a browser had no way in.
Debian's chromium-headless-shell, with its fake camera and microphone, opens the page; the
page offers (RFC 8829 §5.2) through ``POST /v1/meetings/{id}/webrtc``, applies the node's
answer, runs ICE against the node's ICE-lite (RFC 8445 §2.5) and DTLS-SRTP with the node as
server (RFC 5764, RFC 8842 §5.1). What the tests read is the browser's own ``getStats()``
(W3C webrtc-stats), which the page exposes as ``window.pinhole.stats``. A screenshot is
saved (``PINHOLE_ARTIFACTS``, default ``run/artifacts``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import sys
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiortc.mediastreams import VideoStreamTrack

from client import Device
from lab.pki import ORG
from lab.stack import NodeSpec, Stack, running_stack
from tests.browser import Page, headless_page
from tests.integration.webrtc_peer import aiortc_peer
from tests.waiting import HANG_S, until_async
from wire.tls import client_context, spki_pin

# one stack for the module (:func:`stack`): every test runs on the module's event loop
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("loopback_host"),
              pytest.mark.asyncio(loop_scope="module")]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("PINHOLE_ARTIFACTS", ROOT / "run" / "artifacts"))
#: Chromium's fake camera (a moving pattern) and microphone (beeps), allowed without a prompt
FAKE_MEDIA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
#: the console's policy, the same for the join page
CSP = ("default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "connect-src 'self'")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One stack for the module's tests: each has its own devices, cache and meeting
    (:func:`_meeting`), and none changes the cloud or its node (the test that kills a node
    starts its own stack)."""
    async with running_stack([NodeSpec("node-a", "eu", 0)],
                             state_dir=tmp_path_factory.mktemp("join-page")) as running:
        yield running


def _meeting(name: str) -> str:
    """A meeting id of this test's own on the module's stack."""
    return f"{name}-{secrets.token_hex(4)}"


def _pin(stack: Stack) -> str:
    return spki_pin((stack.state_dir / "cloud.pem").read_bytes()).removeprefix("sha256/")


async def _token(stack: Stack, name: str) -> str:
    """A device token for ``name``, as ``pinhole join-link`` gets one."""
    device = Device(stack.api())
    try:
        registered = await device.register(ORG, stack.enrollment_key, name)
        return registered.token.get_secret_value()
    finally:
        await device.close()
        await device.api.close()


async def _pinhole(page: Page) -> dict[str, Any]:
    value: dict[str, Any] = await page.evaluate("JSON.parse(JSON.stringify(window.pinhole))")
    return value


async def _alert(page: Page) -> str:
    await page.wait_for("!document.getElementById('alert').hidden")
    text: str = await page.evaluate("document.getElementById('alert').textContent")
    return text


async def _cli(stack: Stack, cache: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client", "--stack", str(stack.state_dir / "stack.json"),
        "--cache-dir", str(cache), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_chromium_and_aiortc_see_each_others_video(stack: Stack) -> None:
    """Chromium's fake camera reaches aiortc and aiortc's VP8 reaches Chromium (RFC 7741),
    both decoded; the pair Chromium nominated as the controlling agent (RFC 8445 §8.1.1)
    ends at the node's highest-priority candidate, UDP 5004; the page shows that pair, the
    node and the rule, loads nothing from elsewhere, and ``window.pinhole`` is read-only."""
    peer, meeting = await aiortc_peer(stack, "aiortc"), _meeting("browser")
    try:
        await peer.device.api.create_meeting(meeting_id=meeting)
        peer.pc.addTrack(VideoStreamTrack())
        await peer.join(meeting)
        token = await _token(stack, "chromium")
        async with headless_page(trust_spki=_pin(stack), extra_args=FAKE_MEDIA) as page:
            await page.goto(f"{stack.cloud_url}/join/{meeting}#token={token}")
            await page.wait_for("window.pinhole.stats && window.pinhole.stats.framesDecoded > 0 "
                                "&& window.pinhole.stats.bitrate.inboundKbps > 0",
                                timeout_s=HANG_S)

            async def decoded() -> bool:
                return peer.frames["video"] > 0

            await until_async(decoded, "aiortc decodes the browser's video", timeout_s=HANG_S)
            state = await _pinhole(page)
            assert state["state"] == "connected" and state["error"] is None, state
            stats = state["stats"]
            node = stack.nodes[0]
            port = next(e["port"] for e in node["endpoints"] if e["rung"] == "udp/5004")
            remote = stats["selectedPair"]["remote"]
            assert (remote["address"], remote["port"], remote["protocol"]) == (
                node["address"], port, "udp")
            assert stats["selectedPair"]["nominated"] and stats["selectedPair"]["state"] == (
                "succeeded")
            transport = stats["transport"]
            assert (transport["protocol"], transport["relay"], transport["dtlsState"]) == (
                "udp", False, "connected")
            assert stats["join"]["node"] == "node-a"
            assert stats["join"]["rule"] == "meeting-node"  # aiortc was there first
            [video] = [v for v in stats["inboundVideo"] if v["framesDecoded"]]
            assert video["framesDecoded"] == stats["framesDecoded"]
            assert await page.evaluate("window.pinhole = null; window.pinhole !== null")
            panel = await page.evaluate("document.body.innerText")
            assert f"{node['address']}" in panel and "meeting-node" in panel
            assert await page.evaluate("document.querySelectorAll('figure.live').length") == 2
            origins = await page.evaluate(
                "performance.getEntriesByType('resource').map((e) => new URL(e.name).origin)")
            assert set(origins) <= {await page.evaluate("location.origin")}  # nothing external
            shot = ARTIFACTS / "join-page.png"
            await page.screenshot(shot)
            assert shot.stat().st_size > 10_000
    finally:
        await peer.close()


async def test_the_page_says_why_it_cannot_join(stack: Stack) -> None:
    """Defect it pins: a page that fails silently. Without a token the page says so and
    does not call the API; with a forged one it shows the API's own error (401)."""
    standup, review = _meeting("standup"), _meeting("review")
    async with headless_page(trust_spki=_pin(stack), extra_args=FAKE_MEDIA) as page:
        await page.goto(f"{stack.cloud_url}/join/{standup}")
        assert await _alert(page) == (
            "This link has no device token (the address must end in #token=…). Ask for a "
            f"link with: pinhole join-link --meeting {standup}")
        assert (await _pinhole(page))["state"] == "no-token"
        assert await page.evaluate("performance.getEntriesByType('resource').length") == 0
        await page.goto(f"{stack.cloud_url}/join/{review}#token=forged.token")
        assert await _alert(page) == ("Could not join this meeting: invalid token "
                                      "(unauthorized, HTTP 401)")
        assert (await _pinhole(page))["state"] == "error"


async def test_the_page_is_self_contained_under_the_consoles_policy(stack: Stack) -> None:
    """The page holds a device token, so nothing from another site may run in it: it is
    sent with the console's Content-Security-Policy and no-store, and names no other site
    (no http:, https:, ws: or wss: URL in it; it works offline)."""
    async with aiohttp.ClientSession() as http, http.get(
            f"{stack.cloud_url}/join/standup", ssl=client_context(stack.ca_file)) as response:
        assert response.status == 200 and response.content_type == "text/html"
        assert response.headers["Content-Security-Policy"] == CSP
        assert response.headers["Cache-Control"] == "no-store"
        page = await response.text()
    assert page == resources.files("cloud").joinpath("join.html").read_text()
    assert "<title>Pinhole meeting</title>" in page
    assert re.findall(r"(?i)(?:https?|wss?):", page) == []


async def test_join_link_prints_a_link_that_works(stack: Stack, tmp_path: Path) -> None:
    """``pinhole join-link`` prints the page's URL with the token in the fragment, which the
    browser keeps to itself (RFC 3986 §3.5); opened (with the drawn test pattern instead of a
    camera) it joins and sends video. A second link of the same device ends the first one's
    token; a link to a meeting that does not exist is refused before it is printed."""
    nobody, demo = _meeting("nobody-here"), _meeting("demo")
    status, out, err = await _cli(stack, tmp_path, "join-link", "--meeting", nobody)
    assert status == 2 and f"the cloud has no meeting {nobody}" in err, err
    status, out, err = await _cli(stack, tmp_path, "--json", "join-link", "--meeting", demo,
                                  "--create")
    assert status == 0, err
    first = json.loads(out)["url"]
    assert first.startswith(f"{stack.cloud_url}/join/{demo}#token=")
    status, out, err = await _cli(stack, tmp_path, "join-link", "--meeting", demo)
    assert status == 0 and f"open it in a browser to join {demo} as 'cli (browser)'" in err, err
    url = out.strip()
    assert url != first and out == url + "\n"
    async with aiohttp.ClientSession() as http:
        for link, expected in ((first, 401), (url, 200)):
            token = link.partition("#token=")[2]
            async with http.get(f"{stack.cloud_url}/v1/nodes", ssl=client_context(stack.ca_file),
                                headers={"Authorization": f"Bearer {token}"}) as response:
                assert response.status == expected, link
    async with headless_page(trust_spki=_pin(stack), extra_args=FAKE_MEDIA) as page:
        await page.goto(url + "&source=synthetic")
        await page.wait_for("window.pinhole.state === 'connected' && window.pinhole.stats "
                            "&& window.pinhole.stats.framesEncoded > 0", timeout_s=HANG_S)
        assert await page.evaluate("document.querySelector('figcaption b').textContent") == (
            "You (test pattern)")
        assert (await _pinhole(page))["stats"]["join"]["node"] == "node-a"


async def test_the_browser_offers_again_when_its_node_dies(tmp_path: Path) -> None:
    """A node dies mid-call: the cloud tells the page ``media.reoffer`` (its DTLS keys were
    the dead node's, RFC 5764 §4.2), the page sends a new offer (RFC 8829 §5.2), lands on
    the live node and decodes the aiortc peer's video again, which re-offered too. The time
    from the kill to the browser's first frame after it is printed; bench/time_to_media
    measures it (a timed verdict here would hang on the machine's load)."""
    specs = [NodeSpec("node-a", "eu", 0), NodeSpec("node-b", "eu", 0)]
    async with running_stack(specs, state_dir=tmp_path) as stack:
        peer = await aiortc_peer(stack, "aiortc")
        reoffers: list[str] = []

        async def follow() -> None:
            async for event in peer.device.api.events():
                if event.type == "media.reoffer":
                    reoffers.append(event.node_id or "")
                    await peer.pc.close()
                    peer.renew()
                    peer.pc.addTrack(VideoStreamTrack())
                    await peer.join("failover")

        follower = asyncio.create_task(follow())
        try:
            await peer.device.api.create_meeting(meeting_id="failover")
            peer.pc.addTrack(VideoStreamTrack())
            first = await peer.join("failover")
            token = await _token(stack, "chromium")
            async with headless_page(trust_spki=_pin(stack), extra_args=FAKE_MEDIA) as page:
                await page.goto(f"{stack.cloud_url}/join/failover#token={token}")
                await page.wait_for("window.pinhole.stats && window.pinhole.stats.framesDecoded"
                                    " > 0", timeout_s=HANG_S)
                assert (await _pinhole(page))["stats"]["join"]["node"] == first.node.id
                killed = asyncio.get_running_loop().time()
                await stack.kill(first.node.id)
                await page.wait_for(
                    "window.pinhole.moves && window.pinhole.moves.length === 1 && "
                    "window.pinhole.stats.join && window.pinhole.stats.join.node === "
                    "window.pinhole.moves[0].to && window.pinhole.stats.framesDecoded > 0",
                    timeout_s=HANG_S)
                back = asyncio.get_running_loop().time() - killed
                state = await _pinhole(page)
                [move] = state["moves"]
                assert move["from"] == first.node.id and move["to"] != first.node.id
                assert reoffers == [first.node.id]
                assert state["state"] == "connected" and state["error"] is None
                print(f"browser back with video {back:.2f} s after its node was killed "
                      f"(answer {move['answerMs']} ms after media.reoffer)")
        finally:
            follower.cancel()
            await peer.close()
