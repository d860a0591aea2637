"""A firewall that forgets a UDP flow 5 s after the last packet from inside.

"with a stateful firewall whose UDP idle timeout is shorter than 15 s
and refreshed only by outbound packets, a muted participant loses 40 % of
incoming media"; the seeds: the pinhole is closed "if no packets are sent from
inside". Here the gateway's conntrack UDP timeout is 5 s and a dynamic set
admits inbound UDP only for 5 s after the inside flow's last outbound packet
(Lab.refresh_on_outbound_only). A speaker talks; a muted listener with the
default consent schedule (RFC 7675 §5.1 randomization around 4 s) must lose
under 1 % of the speaker's media over 20 s, while one checking only every
15 s (the old keepalive) loses far more: the firewall really forgets flows.

Defect pinned down: the listeners called for a fixed 24 s, so on a busy machine, where the
speaker took more than 4 s to join, they left before its last second (907 of 1,000 heard,
no gap among them). They now listen until the speaker is done and then hang up (Ctrl-C).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from lab.netns import lab
from tests.lab.legs import latched
from tests.prereqs import require_root, require_tool
from tests.waiting import until_sync

pytestmark = [pytest.mark.lab, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _pinhole(fw: Any, stack_json: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*fw.exec_prefix(fw.ent), sys.executable, "-m", "client", "--stack", str(stack_json),
         "--no-cache", "--json", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def test_a_muted_listener_keeps_a_5_s_outbound_refreshed_pinhole() -> None:
    require_root()
    for tool in ("ip", "nft", "conntrack"):
        require_tool(tool)
    with tempfile.TemporaryDirectory(prefix="pinhole-lab-") as tmp, \
            lab("open", udp_timeout_s=5) as fw:
        stack_json = fw.start_stack(Path(tmp))
        fw.refresh_on_outbound_only(5)
        meeting = _result(_pinhole(fw, stack_json, "meeting", "create"))["meeting_id"]
        listeners = {
            name: _pinhole(fw, stack_json, "--name", name, "call", "--meeting", meeting,
                           "--mute", "--seconds", "300", *extra)
            for name, extra in (("default", ()), ("every-15-s", ("--consent-s", "15")))
        }
        # both latched (register, probe, join, connect) before the speaker
        until_sync(lambda: latched(Path(tmp)) >= 2, "both listeners latched", timeout_s=60)
        speaker = _pinhole(fw, stack_json, "--name", "speaker", "call", "--meeting", meeting,
                           "--seconds", "20")
        spoke = _result(speaker)
        for proc in listeners.values():  # Ctrl-C: they hang up and report
            proc.send_signal(signal.SIGINT)
        heard = {name: _result(proc) for name, proc in listeners.items()}
        expired = fw.counter("expired", table="pinhole_outbound_refresh")
    assert spoke["packets_sent"] >= 950
    default, sparse = heard["default"], heard["every-15-s"]
    assert [leg["node"] for leg in default["legs"]] == [default["joined_node"]]
    assert default["loss"] < 0.01, default
    assert default["packets_received"] >= 0.99 * spoke["packets_sent"], default
    # the firewall is as aggressive as claimed: without checks inside 5 s, media is dropped
    assert expired > 0
    assert sparse["packets_received"] < 0.97 * spoke["packets_sent"], sparse


def test_netcheck_measures_a_short_udp_idle_timeout() -> None:
    """"netcheck reports when a firewall's UDP idle timeout looks short". With
    pinholes that close 3 s after the last packet from inside, the listener leg of
    ``pinhole netcheck --udp-idle-s`` hears the talker for about 3 s, and the report
    says it is shorter than the consent schedule can hold."""
    require_root()
    for tool in ("ip", "nft", "conntrack"):
        require_tool(tool)
    with tempfile.TemporaryDirectory(prefix="pinhole-lab-") as tmp, \
            lab("open", udp_timeout_s=3) as fw:
        stack_json = fw.start_stack(Path(tmp))
        fw.refresh_on_outbound_only(3)
        report = _result(_pinhole(fw, stack_json, "netcheck", "--udp-idle-s", "8"))
    idle = report["netcheck"]["udp_idle"]
    assert idle["rung"].startswith("udp")
    assert 2.0 <= idle["closed_after_s"] <= 4.0, idle
    assert idle["looks_short"] and "UDP idle timeout" in idle["advice"]
