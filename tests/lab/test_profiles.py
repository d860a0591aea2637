"""Every firewall profile, for real: namespaces, NAT and nftables in front of two clients.

DESIGN.md's lab table: for each profile the clients must end on the expected
transport (UDP 5004 when allowed, the last-resort UDP 33434, TCP 5004, TLS
443), media must cross intact both ways, and the whitelist profile must get
the in-range node although another is closer. STUN inspection must also drop
a UDP flow that does not begin with a STUN Binding Request.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.netns import ENT_PREFIX, GW_WAN, INET_PREFIX, PROXY_HOST, Lab, lab, leftovers
from tests.prereqs import require_root, require_tool

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
PROXY_PORT = 8888

EXPECTED = {  # DESIGN.md, "The firewall lab"
    "open": ("udp/5004", "node-near"),
    "udp-5004": ("udp/5004", "node-near"),
    "udp-33434": ("udp/33434", "node-near"),
    "no-udp": ("tcp/5004", "node-near"),
    "tls-only": ("tls/443", "node-near"),
    "proxy-only": ("http-proxy", "node-near"),  # through tinyproxy on the proxy host
    "whitelist": ("udp/5004", "node-far"),  # the in-range node, though farther
    "stun-inspection": ("udp/5004", "node-near"),
}


class Running:
    def __init__(self, fw: Lab, state: Path) -> None:
        self.fw, self.state = fw, state

    def client(self, *args: str, timeout_s: float = 60) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*self.fw.exec_prefix(self.fw.ent), sys.executable, "-m", "client", "--stack",
             str(self.state / "stack.json"), "--no-cache", "--json", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen[str], timeout_s: float = 90) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    require_root()
    for tool in ("ip", "nft", "conntrack"):
        require_tool(tool)
    with tempfile.TemporaryDirectory(prefix="pinhole-lab-") as tmp, lab("open") as fw:
        state = Path(tmp)
        stack = subprocess.Popen(
            [*fw.exec_prefix(fw.inet), sys.executable, "-m", "lab", "stack", "--prefix",
             INET_PREFIX, "--state-dir", str(state)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        conf = state / "tinyproxy.conf"
        conf.write_text(f"Port {PROXY_PORT}\nListen {PROXY_HOST}\nBind {PROXY_HOST}\n"
                        f"Allow {ENT_PREFIX}.0/24\nConnectPort 443\nTimeout 60\n"
                        "MaxClients 50\nLogLevel Connect\n")
        proxy = subprocess.Popen([*fw.exec_prefix(fw.ent), require_tool("tinyproxy"), "-d",
                                  "-c", str(conf)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 40
            while not (state / "stack.json").exists():
                assert stack.poll() is None, "the stack exited; see its logs"
                assert time.monotonic() < deadline, "the stack did not come up"
                time.sleep(0.1)
            yield Running(fw, state)
        finally:
            proxy.terminate()
            stack.terminate()
            stack.wait(15)
            proxy.wait(15)


@pytest.mark.parametrize("profile", list(EXPECTED))
def test_profile_ends_on_the_expected_transport_and_media_flows(
    running: Running, profile: str
) -> None:
    running.fw.load_profile(profile)
    subprocess.run([*running.fw.exec_prefix(running.fw.gw), "conntrack", "-F"],
                   capture_output=True, check=False)
    proxy = ["--proxy", f"http://{PROXY_HOST}:{PROXY_PORT}"] if profile == "proxy-only" else []
    meeting = _result(running.client(*proxy, "meeting", "create"))["meeting_id"]
    calls = [running.client(*proxy, "--name", name, "call", "--meeting", meeting,
                            "--seconds", "3")
             for name in ("alice", "bob")]
    results = [_result(call) for call in calls]
    transport, node = EXPECTED[profile]
    for result in results:
        assert (result["transport"], result["node"]) == (transport, node), (
            result["attempts"], result["reason"]["candidates"])
        assert result["packets_received"] > 100 and result["loss"] == 0, result


def test_stun_inspection_drops_a_udp_flow_that_does_not_start_with_stun(
    running: Running,
) -> None:
    """Seed: STUN inspection "can dynamically open traffic based on STUN packets"."""
    running.fw.load_profile("stun-inspection")
    before = running.fw.counter("not_stun")
    code = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            f"s.sendto(b'\\x80' + bytes(40), ('{INET_PREFIX}.2', 5004))")
    subprocess.run([*running.fw.exec_prefix(running.fw.ent), sys.executable, "-c", code],
                   check=True, timeout=10)
    time.sleep(0.2)
    assert running.fw.counter("not_stun") == before + 1


def test_a_lab_leaves_nothing_behind() -> None:
    """Issue 6: a run leaves no namespace (and so no veth, nftables table) behind."""
    require_root()
    require_tool("nft")
    with lab("no-udp") as fw:
        run_id = fw.run_id
        assert len(leftovers([run_id])) == 3
    assert leftovers([run_id]) == []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert run_id not in links


def test_the_mapped_address_is_the_gateways_public_one(running: Running) -> None:
    """NAT, for real: a probe's XOR-MAPPED-ADDRESS is the firewall's outside address."""
    running.fw.load_profile("open")
    probes = _result(running.client("probe"))["probes"]
    mapped = {p["mapped"].rsplit(":", 1)[0] for p in probes if p["mapped"]}
    assert mapped == {GW_WAN}


def test_keepalives_keep_the_nat_pinhole_open(running: Running) -> None:
    """Seed: the pinhole "is usually closed after 30 seconds if no packets are sent from
    inside" (here 3 s). Two muted listeners: the one that sends keepalives hears the
    speaker after a 5 s silence; the one that does not, no longer does."""
    fw = running.fw
    fw.load_profile("open")
    fw.set_udp_timeout(3)
    try:
        meeting = _result(running.client("meeting", "create"))["meeting_id"]
        party = [*fw.exec_prefix(fw.ent), sys.executable, "-m", "tests.lab.nat_party",
                 "--stack", str(running.state / "stack.json"), "--meeting", meeting]
        listeners = {
            name: subprocess.Popen([*party, "--role", "listener", "--keepalive-s", keep,
                                    "--seconds", "11"],
                                   stdout=subprocess.PIPE, text=True, cwd=ROOT)
            for name, keep in (("keeps", "1"), ("silent", "0"))
        }
        for proc in listeners.values():  # both latched before the speaker starts
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline())["ready"]
        speaker = subprocess.run([*party, "--role", "sender", "--phases", "1:1,0:5,2:2"],
                                 capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert speaker.returncode == 0, speaker.stderr
        heard = {}
        for name, proc in listeners.items():
            out, _ = proc.communicate(timeout=30)
            heard[name] = json.loads(out.splitlines()[-1])["phases"]
    finally:
        fw.set_udp_timeout(30)
    assert heard["keeps"].get("1", 0) > 40 and heard["keeps"].get("2", 0) > 80
    assert heard["silent"].get("1", 0) > 40 and heard["silent"].get("2", 0) == 0
