"""Screen sharing through the lab's real firewall profiles: namespaces, NAT and nftables.

Seed (FNR): "Cisco Spark uses TCP for messaging, file transfer, and screen sharing and UDP
as the preferred method for audio and video"; ports table "Screen Sharing (in app) TCP
5004* 33434"; "If TCP traffic is also blocked, then Cisco Spark ... attempts to route
traffic through your organization's HTTP Proxy for all services, including: ... screen
sharing, audio, and video". In each profile two real ``pinhole call`` processes share a
meeting, one presenting (``--share``): each report says where its audio/video went and
where its content went, in the same call, and the receiver got the presenter's frames.
docs/design.md's lab table lists what each profile must give.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.netns import PROXY_HOST, lab
from tests.lab.legs import latched
from tests.lab.test_profiles import Running as ProfileRunning
from tests.lab.test_profiles import _result
from tests.prereqs import require_root, require_tool
from tests.waiting import until_sync

pytestmark = pytest.mark.lab
PROXY_PORT = 8888
STREAM = {"tcp/5004", "tls/443"}  # no-udp: the two race (tests/lab/test_profiles.py)

#: profile → (where audio/video end, where content ends), docs/design.md "The firewall lab"
EXPECTED: dict[str, tuple[set[str], set[str]]] = {
    "open": ({"udp/5004"}, {"tcp/5004"}),
    "no-udp": (STREAM, STREAM),
    "tls-only": ({"tls/443"}, {"tls/443"}),
    "proxy-only": ({"http-proxy"}, {"http-proxy"}),
    "no-tcp-5004": ({"udp/5004"}, {"tcp/33434", "tls/443"}),
}


class Running(ProfileRunning):
    """The profile tests' runner (``client``), and what the nodes relayed to content legs."""

    def content_bytes_out(self) -> float:
        """What the three nodes relayed to content legs so far (their /metrics)."""
        nodes = json.loads((self.state / "stack.json").read_text())["nodes"]
        code = ("import re, sys, urllib.request\n"
                "total = 0.0\n"
                "for url in sys.argv[1:]:\n"
                "    text = urllib.request.urlopen(url, timeout=5).read().decode()\n"
                "    found = re.search(r'^pinhole_node_content_bytes_total"
                "\\{direction=\"out\"\\} (\\S+)$', text, re.M)\n"
                "    total += float(found.group(1)) if found else 0.0\n"
                "print(total)\n")
        done = subprocess.run(
            [*self.fw.exec_prefix(self.fw.inet), sys.executable, "-c", code,
             *(n["metrics_url"] for n in nodes)],
            capture_output=True, text=True, timeout=30, check=True)
        return float(done.stdout.strip())


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    require_root()
    for tool in ("ip", "nft", "conntrack", "tinyproxy"):
        require_tool(tool)
    with tempfile.TemporaryDirectory(prefix="pinhole-lab-") as tmp, lab("open") as fw:
        fw.start_stack(Path(tmp))  # both stopped by the lab's teardown
        fw.start_proxy()
        yield Running(fw, Path(tmp))


def _raced_to(content: dict[str, Any], expected: set[str]) -> bool:
    """The content leg ended where the profile lets it, or a later rung of the content
    ladder authenticated first while the expected one was still on its way (the race takes
    the first leg to authenticate, RFC 8305 §5): then the expected rung was abandoned, not
    refused by the firewall."""
    if content["transport"] in expected:
        return True
    return any(a["rung"] in expected and str(a["error"]).startswith("abandoned")
               for a in content["attempts"])


@pytest.mark.parametrize("profile", list(EXPECTED))
def test_content_takes_its_own_ladder_beside_audio_and_video(
        running: Running, profile: str) -> None:
    running.fw.load_profile(profile)  # also forgets the flows the last profile admitted
    proxy = ["--proxy", f"http://{PROXY_HOST}:{PROXY_PORT}"] if profile == "proxy-only" else []
    meeting = _result(running.client(*proxy, "meeting", "create"))["meeting_id"]
    before, relayed = latched(running.state), running.content_bytes_out()
    # alice presents until hung up; bob joins once her media and content legs latched, and
    # both talk until the nodes relayed two frames to bob (30 packets of ~1100 bytes each)
    alice = running.client(*proxy, "--name", "alice", "call", "--meeting", meeting,
                           "--share", "--seconds", "600")
    until_sync(lambda: latched(running.state) >= before + 2 or alice.poll() is not None,
               "alice's media and content legs latched", timeout_s=60)
    bob = running.client(*proxy, "--name", "bob", "call", "--meeting", meeting,
                         "--seconds", "600")
    until_sync(lambda: (running.content_bytes_out() >= relayed + 2 * 30 * 1100
                        or bob.poll() is not None or alice.poll() is not None),
               "two frames relayed to bob's content leg", timeout_s=90, poll_s=0.5)
    bob.send_signal(signal.SIGINT)  # Ctrl-C: each hangs up and reports, bob first (the
    seen = _result(bob)  # presenter leaving would free the floor)
    alice.send_signal(signal.SIGINT)
    shared = _result(alice)
    media, content = EXPECTED[profile]
    for call in (shared, seen):
        assert call["transport"] in media, call["attempts"]
        assert call["packets_received"] > 0, call
        assert _raced_to(call["content"], content), call["content"]
    assert shared["content"]["role"] == "presenter" and shared["content"]["frames_sent"] > 0
    assert seen["content"]["role"] == "receiver", seen["content"]
    assert seen["content"]["frames_received"] > 0, seen["content"]
    assert seen["content"]["presenter"] == shared["participant_id"]
