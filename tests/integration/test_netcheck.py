"""``pinhole netcheck`` on loopback: the exit status, progress, and what it still reports
when signaling fails.

Pins down the netcheck defects that loopback can show: nothing was printed while it
waited, a failed signaling check ended the run before any node was probed (Webex's and
LiveKit's connection tests keep reporting), and a TLS-inspecting box was not named.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from lab.net import free_port
from lab.stack import NodeSpec, Stack, running_stack
from wire.tls import issue, make_ca

pytestmark = pytest.mark.slow
#: the tests on the module's stack run on the module's event loop, where it runs
ON_THE_MODULE_STACK = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One stack for the module's tests: each has its own cache, and none changes the cloud
    or its node (the test that stops the cloud has a stack of its own)."""
    async with running_stack([NodeSpec("node-a", "eu", 0)],
                             state_dir=tmp_path_factory.mktemp("netcheck") / "stack") as s:
        yield s


@pytest.fixture
async def own_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """A stack for one test that stops its cloud."""
    async with running_stack([NodeSpec("node-a", "eu", 0)], state_dir=tmp_path / "stack") as s:
        yield s


async def _netcheck(stack: Stack, cache: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client", "--stack", str(stack.state_dir / "stack.json"),
        "--cache-dir", str(cache), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    if "--json" in args:
        return proc.returncode, json.loads(out)["netcheck"], err.decode()
    return proc.returncode, {"text": out.decode()}, err.decode()


def _rows(result: dict[str, Any]) -> dict[str, str]:
    return {c["check"]: c["status"] for c in result["checks"]}


@ON_THE_MODULE_STACK
async def test_progress_on_stderr_and_the_table_on_stdout(stack: Stack, tmp_path: Path) -> None:
    status, out, err = await _netcheck(stack, tmp_path / "c", "netcheck")
    assert status == 0, err
    assert "cloud   TCP: ok" in err and "probed 5/5" in err  # progress (tcp/33434: content)
    table = out["text"].splitlines()
    assert table[0].split() == ["section", "check", "target", "status", "ms", "detail"]
    assert any(line.split()[:4] == ["media", "node-a", "udp/5004", stack.nodes[0]["address"]
                                    + ":5004"] for line in table)
    assert "verdict: all good" in out["text"] and "seed" not in out["text"]


async def test_no_signaling_still_probes_the_nodes_of_the_last_registration(
        own_stack: Stack, tmp_path: Path) -> None:
    """Signaling blocked (nothing listens where the cloud should be): exit 3, and the nodes
    from the cached node list are probed all the same."""
    stack, cache = own_stack, tmp_path / "c"
    assert (await _netcheck(stack, cache, "netcheck"))[0] == 0  # registers: caches the list
    cloud = stack.processes[0]  # the cloud goes away; its nodes keep answering STUN
    cloud.terminate()
    await cloud.wait()
    status, result, _ = await _netcheck(stack, cache, "--json", "netcheck")
    rows = _rows(result)
    assert status == 3 and result["verdict"]["name"] == "no_signaling"
    assert rows["TCP"] == "blocked" and rows["HTTPS"] == "skipped"
    assert rows["node list"] == "warning"
    assert rows["node-a udp/5004"] == "ok" and result["media_transport"] == "udp/5004"
    assert result["rules"][0]["for"] == "signaling"


@ON_THE_MODULE_STACK
async def test_no_signaling_and_no_cached_node_list(stack: Stack, tmp_path: Path) -> None:
    host = stack.cloud_url.split("//")[1].rsplit(":", 1)[0]
    dead = f"https://{host}:{free_port(host)}"
    status, result, _ = await _netcheck(stack, tmp_path / "empty", "--cloud", dead, "--json",
                                        "netcheck")
    assert status == 3 and _rows(result)["node list"] == "skipped"


@ON_THE_MODULE_STACK
async def test_a_re_signed_certificate_is_named_tls_inspection(
        stack: Stack, tmp_path: Path) -> None:
    """A box that terminates TLS with its own CA (an inspecting proxy) in front of the cloud:
    the TLS row fails and the TLS-inspection row says who issued the certificate."""
    host = stack.cloud_url.split("//")[1].rsplit(":", 1)[0]
    now = datetime.datetime.now(datetime.UTC)
    inspector = make_ca(now, "Contoso Inspection CA")
    leaf = issue(inspector, [host], now)
    (tmp_path / "leaf.pem").write_bytes(leaf.cert_pem)
    (tmp_path / "leaf.key").write_bytes(leaf.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    port = free_port(host)
    server = await asyncio.start_server(drop, host, port, ssl=context)
    try:
        status, result, _ = await _netcheck(stack, tmp_path / "c", "--cloud",
                                            f"https://{host}:{port}", "--json", "netcheck")
    finally:
        server.close()
        await server.wait_closed()
    checks = {c["check"]: c for c in result["checks"]}
    assert status == 3
    assert checks["TLS"]["status"] == checks["TLS inspection"]["status"] == "blocked"
    assert "Contoso Inspection CA" in checks["TLS inspection"]["detail"]
    assert [r["for"] for r in result["rules"]][-1] == "inspection"
