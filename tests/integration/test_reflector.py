"""``pinhole-hybrid-node reflector`` on loopback, real processes: the check an operator runs
from where a hybrid node will live, the reflector the cloud side runs, and the probe an
enterprise client runs against the node's host (task: "a pre-deployment check ... tests
outbound TLS 443 to the cloud, outbound UDP from 33434-33598 (and TCP 5004) to a cloud
node, and that enterprise clients can reach the node's media ports; a table of verdicts
and the firewall rules to add").
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from lab.stack import NodeSpec, running_stack

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
REFLECTOR = [sys.executable, "-m", "hybrid_node", "reflector"]
NODE_HOST = "127.0.0.2"  # where the node will live; its clients come from 127.0.0.1


@contextmanager
def served() -> Iterator[tuple[int, int]]:
    """``reflector serve`` on 127.0.0.1, any free ports; its UDP and TCP ports."""
    proc = subprocess.Popen([*REFLECTOR, "serve", "--listen", "127.0.0.1", "--udp-port", "0",
                             "--tcp-port", "0", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        ports = json.loads(line)["reflector"]
        yield ports["udp_port"], ports["tcp_port"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0  # SIGTERM: a clean stop


def ran(*args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([*REFLECTOR, *args, "--json"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    return done.returncode, json.loads(done.stdout)


def verdicts(document: dict[str, Any]) -> dict[str, str]:
    return {c["check"]: c["verdict"] for c in document["reflector"]["checks"]}


async def test_every_check_passes_where_everything_is_open(tmp_path: Path) -> None:
    """HTTPS to the real cloud (its CA), UDP from five source ports spread over
    33434-33598 and TCP to the reflector, then a client's probe of the node's ports while
    the check listens there: every row passes, no rule to add, exit 0."""
    async with running_stack([NodeSpec("node-a", "eu", 0)], state_dir=tmp_path) as stack:
        code, document = await asyncio.to_thread(check_with_a_client, stack.cloud_url,
                                                 str(stack.ca_file))
    assert code == 0, document
    assert set(verdicts(document).values()) == {"pass"}, document
    assert document["reflector"]["rules"] == []
    details = {c["check"]: c["detail"] for c in document["reflector"]["checks"]}
    assert "33434, 33475, 33516, 33557, 33598" in details["cascade-udp"]
    assert "127.0.0.1 reached" in details["clients-udp"]


def check_with_a_client(cloud: str, ca: str) -> tuple[int, dict[str, Any]]:
    """``check`` on the node's host; once it listens, ``probe`` from a client."""
    with served() as (udp, tcp):
        check = subprocess.Popen(
            [*REFLECTOR, "check", "--cloud", cloud, "--ca", ca, "--reflector", "127.0.0.1",
             "--udp-port", str(udp), "--tcp-port", str(tcp), "--advertise", NODE_HOST,
             "--clients-s", "60", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        assert check.stderr is not None
        while "listening on" not in (line := check.stderr.readline()):
            assert line, "the check ended before it listened"
        assert f"probe --reflector {NODE_HOST}" in line  # it says what to run
        code, probe = ran("probe", "--reflector", NODE_HOST, "--udp-port", str(udp),
                          "--tcp-port", str(tcp))
        assert code == 0 and set(verdicts(probe).values()) == {"pass"}, probe
        out, _ = check.communicate(timeout=60)
    return check.returncode, json.loads(out)


def test_nothing_answering_names_the_rules_to_add() -> None:
    """Nothing listens where the reflector should be: the cascade rows fail, their rules
    are named (nft commands included), the exit status is 4: no cascade at all."""
    with served() as (udp, tcp):
        pass  # the ports are free again: nothing answers there
    code, document = ran("check", "--reflector", "127.0.0.1", "--udp-port", str(udp),
                         "--tcp-port", str(tcp), "--advertise", NODE_HOST)
    assert code == 4, document
    assert verdicts(document) == {"cloud-tls-443": "skipped", "cascade-udp": "fail",
                                  "cascade-tcp-5004": "fail", "clients-udp": "skipped",
                                  "clients-tcp": "skipped"}
    nft = [r["nft"] for r in document["reflector"]["rules"]]
    assert nft == [
        f"nft add rule inet filter forward ip saddr {NODE_HOST} udp sport 33434-33598 "
        f"udp dport {udp} accept",
        f"nft add rule inet filter forward ip saddr {NODE_HOST} tcp dport {tcp} accept"]


def test_usage_errors_say_what_to_pass() -> None:
    done = subprocess.run([*REFLECTOR, "check"], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert done.returncode == 2 and "pass --cloud URL" in done.stderr
    done = subprocess.run([*REFLECTOR, "probe", "--json"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert json.loads(done.stdout)["error"]["code"] == "usage"
