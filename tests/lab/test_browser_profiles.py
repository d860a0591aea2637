"""Browsers behind the firewall lab's real profiles: which candidate pair ICE selects.

Two headless Chromiums (fake camera and microphone) run in the enterprise namespace
(``ip netns exec``, driven over their DevTools pipe), each opening the join page with its
own device's link, in one meeting; the cloud, the three media nodes and coturn (TURN over
TLS on 198.18.0.253:443) run in ``inet``. For each profile both decode the other's video,
and the pair each selected (its own ``getStats``, ``window.pinhole``) is the one the
profile leaves:

- ``open``: UDP to the node's port 5004, the highest-priority candidate of the ICE-lite
  node (RFC 8445 §6.1.2.3's pair priority), although a relayed candidate was gathered too;
- ``no-udp``: TCP to the node's TCP 5004 (ICE-TCP, RFC 6544: the browser's active
  candidate to the node's passive one, RFC 4571 framing);
- ``tls-only``: a relayed local candidate whose allocation runs over TLS (RFC 8656 §3.1)
  to coturn on 443, the one port the profile lets out;
- ``proxy-only``: the same relay over TLS, but the browser (``--proxy-server``) reaches
  coturn through the enterprise's HTTP proxy (tinyproxy on the proxy host, the one host the
  profile lets out), a ``CONNECT`` tunnel to 198.18.0.253:443 that the proxy's log shows.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.browser_time_to_media import browser, join_link
from lab.netns import PROXY_HOST, TINYPROXY_CONF, TURN_HOST, Lab, lab
from lab.turn import TLS_PORT
from tests.browser import Page
from tests.prereqs import require_root, require_tool
from tests.waiting import HANG_S, until_sync

pytestmark = pytest.mark.lab
PROXY_PORT = 8888  # lab/proxy/tinyproxy.conf
DECODED = ("window.pinhole.state === 'connected' && window.pinhole.stats "
           "&& window.pinhole.stats.framesDecoded > 0 && window.pinhole.stats.selectedPair")


@pytest.fixture(scope="module")
def running() -> Iterator[tuple[Lab, Path]]:
    require_root()
    for tool in ("ip", "nft", "conntrack", "turnserver", "tinyproxy",
                 "chromium-headless-shell"):
        require_tool(tool)
    with tempfile.TemporaryDirectory(prefix="pinhole-lab-") as tmp, lab("open") as fw:
        yield fw, fw.start_stack(Path(tmp))  # stopped by the lab's teardown


@contextlib.asynccontextmanager
async def _two_in_a_meeting(fw: Lab, stack_json: Path, proxy: str | None = None,
                            until: str = "true") -> AsyncIterator[list[dict[str, Any]]]:
    """Alice's and Bob's pages in one new meeting (links and browsers through the HTTP
    ``proxy`` if given), once each decodes the other's video and ``until`` holds on the
    page: their ``window.pinhole``."""
    meeting = f"browsers-{secrets.token_hex(3)}"
    links = [join_link(fw, stack_json, meeting, "alice", create=True, proxy=proxy),
             join_link(fw, stack_json, meeting, "bob", proxy=proxy)]
    async with browser(fw, stack_json, proxy) as alice, browser(fw, stack_json, proxy) as bob:
        pages: list[Page] = [alice, bob]
        for page, link in zip(pages, links, strict=True):
            await page.goto(link)
        for page in pages:
            await page.wait_for(DECODED, timeout_s=HANG_S)
            await page.wait_for(until, timeout_s=HANG_S)
        yield [await page.evaluate("JSON.parse(JSON.stringify(window.pinhole))")
               for page in pages]


NOMINATED = ("window.pinhole.stats.selectedPair && "
             "window.pinhole.stats.selectedPair.nominated === true")


def _port(stack_json: Path, node_id: str, rung: str) -> int:
    node = next(n for n in json.loads(stack_json.read_text())["nodes"] if n["id"] == node_id)
    port: int = next(e["port"] for e in node["endpoints"] if e["rung"] == rung)
    return port


async def test_open_selects_udp_to_the_nodes_port_5004(running: tuple[Lab, Path]) -> None:
    """RFC 8445 §6.1.2.3: with every path open the pair with the highest priority wins:
    the browser's UDP candidate (peer-reflexive behind the NAT, RFC 8445 §7.2.5.3.1) to the
    node's UDP 5004, the node's highest-priority candidate; the relayed candidate (type
    preference 0, RFC 8445 §5.1.2.2) was gathered and lost."""
    fw, stack_json = running
    fw.load_profile("open")
    # the page's stats are a snapshot taken each second: the selected pair may show media
    # before a snapshot shows its nomination (a loaded machine's once did not)
    async with _two_in_a_meeting(fw, stack_json, until=NOMINATED) as states:
        for state in states:
            stats = state["stats"]
            pair, node = stats["selectedPair"], stats["join"]
            assert pair["nominated"] and pair["state"] == "succeeded", pair
            assert (pair["remote"]["protocol"], pair["remote"]["address"],
                    pair["remote"]["port"]) == (
                "udp", node["address"], _port(stack_json, node["node"], "udp/5004")), pair
            assert pair["local"]["type"] != "relay" and not stats["transport"]["relay"], pair
            assert any(p["local"]["type"] == "relay" for p in stats["pairs"]), stats["pairs"]


async def test_no_udp_selects_ice_tcp_to_the_nodes_tcp_5004(running: tuple[Lab, Path]) -> None:
    """RFC 6544: UDP is dropped, so the browser's active TCP candidate reaches the node's
    passive TCP 5004 (RFC 6544 §4.5), whose checks, DTLS and SRTP are RFC 4571-framed; no
    relay: a host TCP candidate's type preference is above a relayed one's."""
    fw, stack_json = running
    fw.load_profile("no-udp")
    async with _two_in_a_meeting(fw, stack_json) as states:
        for state in states:
            stats = state["stats"]
            pair, node = stats["selectedPair"], stats["join"]
            assert (pair["remote"]["protocol"], pair["remote"]["address"],
                    pair["remote"]["port"]) == (
                "tcp", node["address"], _port(stack_json, node["node"], "tcp/5004")), pair
            assert pair["local"]["protocol"] == "tcp" and pair["local"]["type"] != "relay"
            assert (stats["transport"]["protocol"], stats["transport"]["relay"]) == (
                "tcp", False)


async def test_tls_only_selects_a_relay_over_turn_tls_443(running: tuple[Lab, Path]) -> None:
    """RFC 8656 §3.1: only TCP 443 leaves, so the one working pair starts at a relayed
    candidate allocated over TLS on coturn's 443 (its own address, beside the cloud's 443)
    and ends at the node's UDP 5004; coturn relays between the two."""
    fw, stack_json = running
    fw.load_profile("tls-only")
    turn = json.loads(stack_json.read_text())["turn"]
    assert turn == {"url": f"turns:{TURN_HOST}:{TLS_PORT}?transport=tcp"}
    async with _two_in_a_meeting(fw, stack_json) as states:
        for state in states:
            _relayed_over_turn_tls(state["stats"], stack_json)


def _relayed_over_turn_tls(stats: dict[str, Any], stack_json: Path) -> None:
    """The browser's selected pair starts at a relayed candidate allocated over TLS on
    coturn and ends at the node's UDP 5004 (RFC 8656 §3.1)."""
    pair, node = stats["selectedPair"], stats["join"]
    local = pair["local"]
    assert (local["type"], local["relayProtocol"], local["address"]) == (
        "relay", "tls", TURN_HOST), pair
    assert (pair["remote"]["protocol"], pair["remote"]["address"], pair["remote"]["port"]) == (
        "udp", node["address"], _port(stack_json, node["node"], "udp/5004")), pair
    assert stats["transport"]["relay"] is True


@contextlib.contextmanager
def _tinyproxy(fw: Lab, log: Path) -> Iterator[str]:
    """The lab's tinyproxy (its own configuration) on the proxy host, in the foreground so
    that its log (``LogLevel Connect``: every request line) goes to ``log``; its URL."""
    with log.open("wb") as out:
        proc = subprocess.Popen([*fw.exec_prefix(fw.ent), "tinyproxy", "-d", "-c",
                                 str(TINYPROXY_CONF)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        until_sync(lambda: f"{PROXY_HOST}:{PROXY_PORT} " in subprocess.run(
            [*fw.exec_prefix(fw.ent), "ss", "-Hltn"], capture_output=True, text=True,
            check=True).stdout or proc.poll() is not None, "tinyproxy listening")
        assert proc.poll() is None, log.read_text()
        yield f"http://{PROXY_HOST}:{PROXY_PORT}"
    finally:
        proc.kill()
        proc.wait()


async def test_proxy_only_selects_a_relay_over_turn_tls_through_the_http_proxy(
        running: tuple[Lab, Path]) -> None:
    """RFC 8656 §3.1 and RFC 9110 §9.3.6 (CONNECT): only the proxy host may leave, to 443;
    a browser told its proxy (``--proxy-server``) loads the page through a CONNECT tunnel to
    the cloud's 443 and opens its TURN-over-TLS connection through another, to coturn's 443,
    so its one working pair starts at a relayed candidate allocated over TLS. No direct pair
    succeeds: UDP is dropped, and Chrome's ICE-TCP attempt at the node's TCP 5004, which it
    also sends through the proxy, is refused (the proxy's ``ConnectPort 443``)."""
    fw, stack_json = running
    fw.load_profile("proxy-only")
    with tempfile.TemporaryDirectory(prefix="pinhole-proxy-") as tmp, \
            _tinyproxy(fw, Path(tmp) / "tinyproxy.log") as proxy:
        async with _two_in_a_meeting(fw, stack_json, proxy) as states:
            for state in states:
                stats = state["stats"]
                _relayed_over_turn_tls(stats, stack_json)
                assert all(p["local"]["type"] == "relay" for p in stats["pairs"]
                           if p["state"] == "succeeded"), stats["pairs"]
        requests = [line.split("): ", 1)[1] for line in
                    (Path(tmp) / "tinyproxy.log").read_text().splitlines()
                    if "Request (file descriptor" in line]
    cloud = json.loads(stack_json.read_text())["cloud"].removeprefix("https://")
    # both pages and both TURN allocations crossed the proxy
    assert requests.count(f"CONNECT {TURN_HOST}:{TLS_PORT} HTTP/1.1") >= 2, requests
    assert requests.count(f"CONNECT {cloud} HTTP/1.1") >= 2, requests
