"""Every firewall profile, for real: namespaces, NAT and nftables in front of two clients.

docs/design.md's lab table: for each profile the clients must end on the expected
transport (UDP 5004 when allowed, the last-resort UDP 33434, TCP 5004, TLS
443), media must cross intact both ways, and the whitelist profile must get
the in-range node although another is closer. STUN inspection must also drop
a UDP flow that does not begin with a STUN Binding Request.
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

from lab.netns import ENT_PREFIX, GW_WAN, HYBRID_HOST, INET_PREFIX, PROXY_HOST, Lab, lab, leftovers
from tests.lab.legs import latched
from tests.prereqs import require_root, require_tool
from tests.waiting import until_sync

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
PROXY_PORT = 8888

EXPECTED = {  # docs/design.md, "The firewall lab"
    "open": ("udp/5004", "node-near"),
    "udp-5004": ("udp/5004", "node-near"),
    "udp-33434": ("udp/33434", "node-near"),
    "no-udp": ("tcp/5004", "node-near"),
    "tls-only": ("tls/443", "node-near"),
    "proxy-only": ("http-proxy", "node-near"),  # through tinyproxy on the proxy host
    "whitelist": ("udp/5004", "node-far"),  # the in-range node, though farther
    "stun-inspection": ("udp/5004", "node-near"),
    "no-tcp-5004": ("udp/5004", "node-near"),  # content's TCP 5004 dropped, not media's UDP
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
        fw.start_stack(Path(tmp))  # both stopped by the lab's teardown
        fw.start_proxy()
        yield Running(fw, Path(tmp))


def _nearest(result: dict[str, Any], expected: str) -> str:
    """The node the assignment must have chosen: the lowest score of what this device
    measured (its round trips, the rung's penalty, the cost of a cascade to the meeting's
    node). On a quiet machine that is the lab's ``expected`` node; with every core busy the
    simulated distances can measure out of order (node-near and node-mid are 30 ms apart;
    a TLS probe once read node-near 53 ms and node-mid less), and the verdict read that
    30 ms margin (defect pinned down)."""
    scored = [c for c in result["reason"]["candidates"]
              if c["score"] is not None and c["excluded"] is None]
    assert expected in {c["node_id"] for c in scored}, scored  # it was reachable
    return str(min(scored, key=lambda c: c["score"])["node_id"])


@pytest.mark.parametrize("profile", list(EXPECTED))
def test_profile_ends_on_the_expected_transport_and_media_flows(
    running: Running, profile: str
) -> None:
    running.fw.load_profile(profile)  # also forgets the flows the last profile admitted
    proxy = ["--proxy", f"http://{PROXY_HOST}:{PROXY_PORT}"] if profile == "proxy-only" else []
    meeting = _result(running.client(*proxy, "meeting", "create"))["meeting_id"]
    # alice talks until hung up; bob calls once her leg has latched, for 3 s: however
    # slowly a loaded machine starts them, the two overlap (they once missed each other)
    before = latched(running.state)
    alice = running.client(*proxy, "--name", "alice", "call", "--meeting", meeting,
                           "--seconds", "600")
    until_sync(lambda: latched(running.state) > before or alice.poll() is not None,
               "alice's leg latched", timeout_s=60)
    bob = _result(running.client(*proxy, "--name", "bob", "call", "--meeting", meeting,
                                 "--seconds", "3"))
    alice.send_signal(signal.SIGINT)  # Ctrl-C: she hangs up and reports
    results = [_result(alice), bob]
    transport, node = EXPECTED[profile]
    for result in results:
        if profile == "no-udp":
            # Both stream rungs get out. TCP 5004 leads the plan and starts first (the seeds'
            # ladder); TLS 443 starts a stream step (20 ms) later and, when TCP's binding
            # is slow to come back, can authenticate first: the race takes the first leg
            # to authenticate (RFC 8305 §5), as a quiet run once showed (TCP 36 ms, TLS
            # 16 ms after it started).
            assert result["plan"][:2] == ["tcp/5004", "tls/443"], result["plan"]
            assert result["transport"] in {"tcp/5004", "tls/443"}, result["attempts"]
            assert result["node"] == _nearest(result, node), result["reason"]["candidates"]
        else:
            assert result["transport"] == transport, result["attempts"]
            assert result["node"] == _nearest(result, node), result["reason"]["candidates"]
        # media flowed on that transport, none lost: how much depends on how long the two
        # calls overlapped, which a loaded machine shortens (> 100 read 85 there)
        assert result["packets_received"] > 0 and result["loss"] == 0, result


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
    until_sync(lambda: running.fw.counter("not_stun") > before, "the gateway counted it")
    assert running.fw.counter("not_stun") == before + 1


def test_a_lab_leaves_nothing_behind() -> None:
    """A run leaves no namespace (and so no veth, nftables table) behind."""
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


def _ready(proc: subprocess.Popen[str]) -> None:
    """Wait for a party's first line: it is registered, joined and latched."""
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["ready"]


def test_keepalives_keep_the_nat_pinhole_open(running: Running) -> None:
    """Seed: the pinhole "is usually closed after 30 seconds if no packets are sent from
    inside" (here 3 s). Two muted listeners: the one that sends keepalives hears the
    speaker after a 5 s silence; the one that does not, no longer does.

    Defects, both of a busy machine: the listeners listened for a fixed 11 s from before the
    speaker started, whose start-up took so long that its last phase came after they had
    stopped (59 of 100 heard); and the silent listener's 3 s pinhole expired while the
    speaker was still starting, so it heard nothing at all. Now the speaker is up first and
    talks once both listeners are latched, and they listen until it is done."""
    fw = running.fw
    fw.load_profile("open")
    fw.set_udp_timeout(3)
    try:
        meeting = _result(running.client("meeting", "create"))["meeting_id"]
        party = [*fw.exec_prefix(fw.ent), sys.executable, "-m", "tests.lab.nat_party",
                 "--stack", str(running.state / "stack.json"), "--meeting", meeting]
        speaker = subprocess.Popen([*party, "--role", "sender", "--phases", "1:1,0:5,2:2"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, cwd=ROOT)
        _ready(speaker)
        listeners = {}
        for name, keep in (("keeps", "1"), ("silent", "0")):  # each latched in turn
            listeners[name] = subprocess.Popen(
                [*party, "--role", "listener", "--keepalive-s", keep], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True, cwd=ROOT)
            _ready(listeners[name])
        # the silent one's pinhole is a moment old when the speaker starts
        _, errors = speaker.communicate("go\n", timeout=60)
        assert speaker.returncode == 0, errors
        heard = {}
        for name, proc in listeners.items():
            out, _ = proc.communicate("speaker done\n", timeout=30)
            heard[name] = json.loads(out.splitlines()[-1])["phases"]
    finally:
        fw.set_udp_timeout(30)
    assert heard["keeps"].get("1", 0) > 40 and heard["keeps"].get("2", 0) > 80
    assert heard["silent"].get("1", 0) > 40 and heard["silent"].get("2", 0) == 0


HYBRID_PROBE = """
import socket, sys
from wire.stun import build_discovery_probe, is_stun
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{source}", 0))
s.settimeout(0.5)
for _ in range(4):
    s.sendto(build_discovery_probe(), ("{node}", 5004))
    try:
        sys.exit(0 if is_stun(s.recv(2048)) else 1)
    except TimeoutError:
        pass
sys.exit(1)
"""


def test_hybrid_profile_lets_only_the_hybrid_host_reach_cloud_media(running: Running) -> None:
    """docs/design.md's `hybrid` row, prepared for the hybrid node: clients keep signaling to the
    cloud but reach no cloud media node on any transport; the hybrid node's host (seed:
    "Hybrid media node (outbound 1: ANY)") reaches them over UDP 5004."""
    fw = running.fw
    fw.load_profile("hybrid")
    probes = _result(running.client("probe"))["probes"]  # registration went through
    assert probes and not [p for p in probes if p["rtt_ms"] is not None], probes
    reach = {
        source: subprocess.run(
            [*fw.exec_prefix(fw.ent), sys.executable, "-c",
             HYBRID_PROBE.format(source=source, node=f"{INET_PREFIX}.2")],
            cwd=ROOT, timeout=20, check=False).returncode == 0
        for source in (HYBRID_HOST, ENT_PREFIX + ".2")
    }
    assert reach == {HYBRID_HOST: True, ENT_PREFIX + ".2": False}


def test_teardown_kills_what_runs_inside_the_lab() -> None:
    """No process outlives its lab (``ip netns del`` alone would leave it running)."""
    require_root()
    with lab("open") as fw:
        sleeper = subprocess.Popen([*fw.exec_prefix(fw.ent), "sleep", "600"])
        # inside once the namespace lists it (``ip netns exec`` keeps the pid)
        until_sync(lambda: str(sleeper.pid) in subprocess.run(
            ["ip", "netns", "pids", fw.ent], capture_output=True, text=True,
            check=False).stdout.split(), "the sleeper runs inside the lab")
    assert sleeper.wait(timeout=10) != 0  # killed, not finished
    assert not subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                              check=False).stdout.count("pinhole_")  # nothing in the host's
