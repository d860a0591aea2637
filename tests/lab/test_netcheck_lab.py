"""``pinhole netcheck`` behind the lab's real firewall: the verdict and exit status per profile.

Pins down the defects: in the proxy-only lab netcheck printed nothing for 16.5 s, no
table, and exited 1 with a message that said to run netcheck; with every UDP rung blocked it
exited 0. Exit statuses: 0 all good, 1 degraded (media on a fallback rung), 2 no media path,
3 no signaling. A hang guard bounds each run (a subprocess timeout), never a speed assertion.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.netns import PROXY_HOST, Lab, lab
from tests.prereqs import require_root, require_tool

pytestmark = pytest.mark.lab
PROXY = f"http://{PROXY_HOST}:8888"
HANG_GUARD_S = 60


class Running:
    def __init__(self, fw: Lab, state: Path) -> None:
        self.fw, self.state = fw, state

    def netcheck(self, *args: str) -> tuple[int, dict[str, Any], str]:
        proc = subprocess.run(
            [*self.fw.exec_prefix(self.fw.ent), sys.executable, "-m", "client", "--stack",
             str(self.state / "stack.json"), "--cache-dir", str(self.state / "cache"), *args,
             "netcheck", "--json"],
            capture_output=True, text=True, timeout=HANG_GUARD_S)
        return proc.returncode, json.loads(proc.stdout)["netcheck"], proc.stderr


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    require_root()
    for tool in ("ip", "nft", "conntrack", "tinyproxy"):
        require_tool(tool)
    with tempfile.TemporaryDirectory(prefix="pinhole-lab-") as tmp, lab("open") as fw:
        fw.start_stack(Path(tmp))
        fw.start_proxy()
        yield Running(fw, Path(tmp))


def _rows(result: dict[str, Any]) -> dict[str, str]:
    return {c["check"]: c["status"] for c in result["checks"]}


def test_open_network_is_all_good(running: Running) -> None:
    running.fw.load_profile("open")
    status, result, _ = running.netcheck()
    assert (status, result["media_transport"], result["rules"]) == (0, "udp/5004", [])


def test_no_udp_is_degraded_on_tcp_5004_and_asks_for_udp_5004(running: Running) -> None:
    """All UDP blocked used to exit 0."""
    running.fw.load_profile("no-udp")
    status, result, _ = running.netcheck()
    rows = _rows(result)
    assert status == 6 and result["verdict"]["name"] == "degraded"
    assert result["media_transport"] == "tcp/5004"
    assert rows["node-near udp/5004"] == rows["node-far udp/33434"] == "blocked"
    assert [r["for"] for r in result["rules"]] == ["udp/5004", "udp/33434"]


def test_proxy_only_without_a_proxy_says_no_signaling_and_still_probes(
        running: Running) -> None:
    """proxy-only, no --proxy: exit 3 (no signaling) with every row, the nodes probed from the
    node list of the last registration, and a hint to pass --proxy."""
    running.fw.load_profile("open")
    assert running.netcheck()[0] == 0  # a registration from here: the node list is cached
    running.fw.load_profile("proxy-only")
    status, result, _err = running.netcheck()
    rows = _rows(result)
    assert status == 3 and rows["TCP"] == "blocked" and rows["node list"] == "warning"
    assert rows["node-near tls/443"] == "blocked" and result["media_transport"] is None
    assert any("--proxy" in hint for hint in result["hints"])
    assert "netcheck" not in " ".join(result["hints"])


def test_proxy_only_through_the_proxy_is_degraded_on_the_proxy_rung(running: Running) -> None:
    running.fw.load_profile("proxy-only")
    status, result, _ = running.netcheck("--proxy", PROXY)
    rows = _rows(result)
    assert status == 6 and result["media_transport"] == "http-proxy"
    assert rows["CONNECT"] == rows["HTTPS"] == rows["WSS"] == "ok"
    assert rows["node-near http-proxy"] == "ok"


def test_tls_only_has_a_media_path_on_tls_443(running: Running) -> None:
    running.fw.load_profile("tls-only")
    status, result, _ = running.netcheck()
    assert status == 6 and result["media_transport"] == "tls/443"
    assert [r["for"] for r in result["rules"]] == ["udp/5004", "tcp/5004", "udp/33434"]
