"""The smoke meeting's verdict and lines (lab/smoke.py), and a firewall profile typo.

Before, ``pinhole-lab compose`` printed a failed client as "no media via -" and left the
reason in a log file; a failed client's line now ends with the error the call printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lab import smoke
from lab.__main__ import main as lab_main


def test_a_failed_client_says_why() -> None:
    failed = {"exit_code": 1, "error": "traceback…\npinhole: timed out: nothing answered"}
    assert smoke.line("client-a", failed) == (
        "client-a: no media via -, 0 packets received, loss -; FAILED (exit code 1): "
        "pinhole: timed out: nothing answered")
    assert not smoke.verdict({"client-a": failed})


def test_a_call_without_packets_fails_the_meeting() -> None:
    silent = {"exit_code": 0, "transport": "udp/5004", "node": "node-near",
              "packets_received": 0, "loss": 0.0}
    good = {**silent, "packets_received": 250}
    assert smoke.line("b", silent).endswith("FAILED: no packet received")
    assert smoke.line("b", good) == "b: udp/5004 via node-near, 250 packets received, loss 0.0"
    assert smoke.verdict({"a": good, "b": good}) and not smoke.verdict({"a": good, "b": silent})
    assert not smoke.verdict({})


def test_the_client_wrapper_writes_the_calls_result(tmp_path: Path) -> None:
    out = tmp_path / "results" / "client-a.json"
    out.parent.mkdir()
    out.write_text('{"stale": true}')  # from an earlier up: never counts
    code = [sys.executable, "-c", "import sys; print('{\"packets_received\": 3}'); "
            "sys.stderr.write('pinhole: the proxy refused'); sys.exit(1)"]
    result = smoke.run_client(out, code)
    assert result == {"packets_received": 3, "exit_code": 1, "writer": smoke.writer(),
                      "error": "pinhole: the proxy refused"}
    assert smoke.read_results(out.parent) == {"client-a": result}
    waited = smoke.wait(out.parent, ["client-a", "client-b"], timeout_s=0.2, poll_s=0.05)
    assert waited["client-b"]["exit_code"] is None
    assert "no result" in waited["client-b"]["error"]


def test_a_profile_that_does_not_exist_is_refused_before_anything_else(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """PINHOLE_FIREWALL_PROFILE with a typo (the compose firewall's only input): exit 2 naming
    it and the profiles that exist, before the firewall looks for its interfaces."""
    monkeypatch.setenv("PINHOLE_FIREWALL_PROFILE", "no-such-profile")
    assert lab_main(["firewall"]) == 2
    said = capsys.readouterr().err
    assert "PINHOLE_FIREWALL_PROFILE='no-such-profile' is not one of open, udp-5004" in said
    assert "Traceback" not in said


ROOT = Path(__file__).resolve().parents[2]


def _client_healthcheck(result: Path) -> bool:
    """docker-compose.yml's client healthcheck, run as Docker runs a CMD-SHELL test."""
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    kind, command = spec["x-client"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    env = {**os.environ, "PINHOLE_RESULT": str(result),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(["sh", "-c", command.replace("$$", "$")], env=env, cwd=ROOT,
                          capture_output=True, check=False, timeout=60).returncode == 0


def test_a_result_an_earlier_up_left_never_makes_a_client_healthy(tmp_path: Path) -> None:
    """Defect: the client's healthcheck was ``test -s $PINHOLE_RESULT``. On a second ``up``
    (no ``down``), the result the first ``up`` left in the volume made the client healthy
    before its new ``smoke client`` had removed it; the smoke meeting then read that result,
    ended ``up`` with exit 0 and stopped the client in the middle of its call, leaving no
    result at all. A client is healthy only once a running client wrote its result."""
    out = tmp_path / "client-a.json"
    earlier = subprocess.run(
        [sys.executable, "-m", "lab.smoke", "client", "--exit", "--out", str(out), "--",
         sys.executable, "-c", "print('{\"packets_received\": 250}')"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=60)
    assert earlier.returncode == 0, earlier.stderr
    assert json.loads(out.read_text())["packets_received"] == 250
    assert not _client_healthcheck(out)  # its writer is gone
    out.write_text(json.dumps({"packets_received": 250, "exit_code": 0}))  # older format
    assert not _client_healthcheck(out)
    out.write_text(json.dumps({"exit_code": 0, "writer": {"pid": os.getpid(), "started": 1}}))
    assert not _client_healthcheck(out)  # a live pid that started at another time

    live = subprocess.Popen(
        [sys.executable, "-m", "lab.smoke", "client", "--out", str(out), "--",
         sys.executable, "-c", "print('{\"packets_received\": 7}')"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(600):  # until it wrote its result (its call took no time)
            if out.exists() and json.loads(out.read_text()).get("packets_received") == 7:
                break
            assert live.poll() is None, live.communicate()
            time.sleep(0.1)
        assert _client_healthcheck(out)
    finally:
        live.terminate()
        live.wait(timeout=30)
    assert not _client_healthcheck(out)
