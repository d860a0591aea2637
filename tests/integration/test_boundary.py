"""Every entry point's error boundary, tried as a new user would (each case a defect seen
from outside): one line naming the flag, file or address and what to do next, JSON on
stdout under --json, the documented exit code (2 usage, 3 cannot reach the cloud,
4 no media path, 5 certificate or pin), and never a traceback. Real processes throughout."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import re
import secrets
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from lab.pki import ORG
from lab.stack import NodeSpec, Stack, running_stack
from tests.integration.calls import UNTIL_HUNG_UP_S, Party, hang_up_all, media_between, relayed
from tests.prereqs import require_tool
from tests.waiting import until, until_async
from wire.tls import make_ca

# one stack for the tests against a stack (:func:`stack`): every test runs on the module's
# event loop
pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


async def _run(*argv: str, env: dict[str, str] | None = None, timeout_s: float = 60
               ) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})})
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_line(err: str) -> str:
    """The failure: exactly one line on stderr, no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


CREDS = ("--org", ORG, "--enrollment-key", "k")


@pytest.mark.parametrize(("argv", "code", "names"), [
    # InvalidUrlClientError traceback before
    ((("--cloud", "not-a-url", *CREDS, "register")), 2, "--cloud not-a-url"),
    # "[Errno 2] No such file or directory" without the file's name before
    (("--cloud", "https://127.0.0.1:9", "--ca", "/nonexistent/ca.pem", *CREDS, "register"), 2,
     "/nonexistent/ca.pem"),
    # a pin that cannot be one: before, a "pin mismatch" that blamed the network
    (("--cloud", "https://127.0.0.1:9", *CREDS, "--pin", "abc", "register"), 2, "--pin abc"),
    # --proxy that is not a URL: before, urllib's ValueError
    (("--cloud", "https://127.0.0.1:9", *CREDS, "--proxy", "http://h:port", "register"), 2,
     "--proxy http://h:port"),
    # a flag pinhole does not know, after the command
    (("--cloud", "https://127.0.0.1:9", *CREDS, "probe", "--bogus"), 2, "--bogus"),
])
async def test_usage_failures_name_the_flag(argv: tuple[str, ...], code: int,
                                            names: str) -> None:
    rc, out, err = await _run("-m", "client", *argv)
    assert rc == code and names in _one_line(err)
    assert out == ""


@pytest.mark.parametrize("content", ["{}", "[]", '{"cloud": 1}', "not json"])
async def test_a_stack_json_that_is_not_one(tmp_path: Path, content: str) -> None:
    """KeyError / TypeError tracebacks before: now the file's name and how to get a good one."""
    stack = tmp_path / "stack.json"
    stack.write_text(content)
    rc, _, err = await _run("-m", "client", "--stack", str(stack), "register")
    line = _one_line(err)
    assert rc == 2 and str(stack) in line and "pinhole-lab stack" in line


async def test_a_cloud_that_is_not_running_names_its_address() -> None:
    """Before: "Cannot connect to host … ssl:<ssl.SSLContext object at 0x…>" and exit 1."""
    port = _closed_port()
    rc, _, err = await _run("-m", "client", "--cloud", f"https://127.0.0.1:{port}", *CREDS,
                            "register")
    line = _one_line(err)
    assert rc == 3 and f"127.0.0.1:{port}" in line and "connection refused" in line
    assert "SSLContext object" not in line


async def test_a_proxy_that_is_not_running_names_its_address() -> None:
    """Before: "the proxy refused the cloud connection: [Errno 111] Connection refused"."""
    proxy = _closed_port()
    rc, _, err = await _run("-m", "client", "--cloud", "https://127.0.0.1:9", *CREDS,
                            "--proxy", f"http://127.0.0.1:{proxy}", "register")
    line = _one_line(err)
    assert rc == 3 and f"127.0.0.1:{proxy}" in line and "--proxy" in line
    assert "Errno" not in line


async def test_json_errors_are_json_on_stdout(tmp_path: Path) -> None:
    """Errors as JSON too, wherever --json is typed (here after the command)."""
    stack = tmp_path / "stack.json"
    stack.write_text("[]")
    rc, out, err = await _run("-m", "client", "--stack", str(stack), "probe", "--json")
    assert rc == 2
    error = json.loads(out)["error"]
    assert set(error) == {"code", "message", "hint"} and str(stack) in error["message"]
    assert "Traceback" not in err


async def test_a_bad_environment_variable_is_named() -> None:
    """Every flag reads PINHOLE_*: a bad value there is a usage failure naming the variable."""
    rc, _, err = await _run("-m", "client", "call", "--meeting", "m",
                            env={"PINHOLE_SECONDS": "soon"})
    assert rc == 2 and "PINHOLE_SECONDS" in _one_line(err)


@pytest.mark.parametrize(("argv", "names"), [
    (("-m", "cloud", "--store", "mongodb://x"), "--store mongodb://x"),  # ValueError before
    (("-m", "cloud", "--cert", "/nonexistent/cloud.pem"), "/nonexistent/cloud.pem"),
    (("-m", "cloud", "--token-key", "xyz"), "--token-key"),
    (("-m", "media_node"), "--cloud"),
    (("-m", "media_node", "--cloud", "https://c", "--ca", "/nonexistent/ca.pem"),
     "/nonexistent/ca.pem"),
    (("-m", "lab", "netns", "up", "--profile", "bogus"), "--profile"),
])
async def test_services_fail_in_one_line(argv: tuple[str, ...], names: str) -> None:
    rc, _, err = await _run(*argv)
    assert rc == 2 and names in _one_line(err)


async def _readyz(port: int) -> int:
    try:
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{port}/readyz") as response:
            return response.status
    except aiohttp.ClientConnectionError:
        return 0


@pytest.mark.redis
async def test_an_unreachable_store_is_not_ready_and_never_claims_to_listen(
        tmp_path: Path) -> None:
    """Before: "listening", then a full traceback every 2.5 s. Now /readyz answers 503, each
    backoff step is one line, and "listening" (and the state file the lab waits for) comes
    once the store answers - here a real redis-server started late."""
    redis_binary = require_tool("redis-server")
    port, redis_port = _closed_port(), _closed_port()
    state = tmp_path / "cloud.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cloud", "--port", str(port), "--store",
        f"redis://127.0.0.1:{redis_port}/0", "--state-file", str(state),
        stderr=asyncio.subprocess.PIPE)
    redis = None
    lines: list[str] = []  # the cloud's log, as it writes it

    async def read_log() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            lines.append(line.decode())

    reader = asyncio.create_task(read_log())
    try:
        async def answers() -> bool:
            return await _readyz(port) != 0

        await until_async(answers, "the cloud answers /readyz")
        assert await _readyz(port) == 503
        await until(lambda: sum("unreachable (attempt" in line for line in lines) >= 2,
                    "two backoff steps logged")
        assert not state.exists()
        redis = await asyncio.create_subprocess_exec(
            redis_binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(tmp_path), stdout=asyncio.subprocess.DEVNULL)
        # the backoff is at most 30 s; here a few seconds
        await until(state.exists, "the cloud wrote its state file", timeout_s=40)
        assert await _readyz(port) == 200
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
        await asyncio.wait_for(reader, 10)
        if redis is not None:
            redis.terminate()
            await redis.wait()
    err = "".join(lines)
    assert "Traceback" not in err
    assert err.count("unreachable (attempt") >= 2
    assert err.index("unreachable (attempt") < err.index("cloud listening on")


# ------------------------------------------------------------------- against a stack


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One stack for the tests against a stack: each has its own cache, devices and meeting
    (:func:`_meeting`), reads the node's counters before and after, and none changes the
    cloud or its node (the media node with a wrong secret is refused and never listed)."""
    async with running_stack([NodeSpec("node-a", "eu", 0)],
                             state_dir=tmp_path_factory.mktemp("boundary") / "stack") as s:
        yield s


def _meeting(name: str) -> str:
    """A meeting id of this test's own on the module's stack."""
    return f"{name}-{secrets.token_hex(4)}"


async def _pinhole(stack: Stack, cache: Path, *argv: str) -> tuple[int, str, str]:
    return await _run("-m", "client", "--stack", str(stack.state_dir / "stack.json"),
                      "--cache-dir", str(cache), *argv)


async def test_failures_against_a_running_cloud(stack: Stack, tmp_path: Path) -> None:
    """http:// to the TLS port (exit 3, says to use https://) and a CA that did not sign
    the cloud's certificate (exit 5: what a TLS-inspecting proxy looks like)."""
    plain = stack.cloud_url.replace("https://", "http://")
    rc, _, err = await _run("-m", "client", "--cloud", plain, "--ca", stack.ca_file,
                            "--org", ORG, "--enrollment-key", stack.enrollment_key,
                            "--no-cache", "register")
    assert (rc, "https://" in _one_line(err)) == (3, True), err
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(make_ca(datetime.datetime.now(datetime.UTC)).cert_pem)
    rc, out, err = await _run("-m", "client", "--cloud", stack.cloud_url, "--ca", str(other_ca),
                              "--org", ORG, "--enrollment-key", stack.enrollment_key,
                              "--no-cache", "--json", "register")
    assert (rc, str(other_ca) in _one_line(err)) == (5, True), err
    assert json.loads(out)["error"]["code"] == "tls_verify"
    # a media node with the wrong secret: exit 2, the last line names the flag
    wrong = tmp_path / "wrong-secret"
    wrong.write_text("wrong")
    rc, _, err = await _run("-m", "media_node", "--cloud", stack.cloud_url, "--ca",
                            stack.ca_file, "--node-secret-file", str(wrong),
                            "--advertise", "127.0.0.1",
                            "--udp-port", "0", "--udp-last-resort-port", "0", "--tcp-port", "0",
                            "--tls-port", "0")
    assert rc == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("pinhole-media-node: ") and "--node-secret" in last


@pytest.mark.parametrize("junk", ["[1, 2]", "null", '{"device_id": "../../not an id"}', "{"])
async def test_a_corrupt_identity_cache_is_set_aside_and_rebuilt(
        stack: Stack, tmp_path: Path, junk: str) -> None:
    """Before: AttributeError tracebacks ([1,2], null) or a 422 from the cloud (a bad id)."""
    cache = tmp_path / "cache"
    assert (await _pinhole(stack, cache, "register"))[0] == 0
    (identity,) = cache.glob("device-*.json")
    identity.write_text(junk)
    rc, out, err = await _pinhole(stack, cache, "--json", "register")
    assert rc == 0, err
    assert "Traceback" not in err and err.count("warning") == 1 and identity.name in err
    assert (cache / (identity.name + ".corrupt")).read_text() == junk
    assert json.loads(identity.read_text())["device_id"] == json.loads(out)["device_id"]


async def test_a_corrupt_report_cache_is_set_aside_and_probed_again(
        stack: Stack, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert (await _pinhole(stack, cache, "probe"))[0] == 0
    (report,) = cache.glob("report-*.json")
    report.write_text('{"device_id": 5}')
    rc, out, err = await _pinhole(stack, cache, "--json", "probe")
    assert rc == 0 and json.loads(out)["source"] == "probe"
    assert err.count("warning") == 1 and (cache / (report.name + ".corrupt")).exists()


ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def _documented_keys(command: str) -> set[str]:
    """The keys docs/architecture.md documents for ``pinhole COMMAND --json``."""
    for line in ARCHITECTURE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] == f"`{command}`":
            return set(re.findall(r"`([a-z_]+)`", cells[1]))
    raise AssertionError(f"docs/architecture.md documents no --json shape for {command}")


async def test_each_command_has_its_documented_json_shape(stack: Stack, tmp_path: Path) -> None:
    """One documented --json shape per command (documented, rounded)."""
    cache = tmp_path / "cache"
    outputs = {}
    for command, argv in (("register", ["register"]), ("probe", ["probe"]),
                          ("meeting create", ["meeting", "create"]),
                          ("join", ["join", "--meeting", _meeting("shape"), "--create"])):
        rc, out, err = await _pinhole(stack, cache, *argv, "--json")
        assert rc == 0, err
        outputs[command] = json.loads(out)
        assert set(outputs[command]) == _documented_keys(command), command
    assert all(round(f, 3) == f for o in outputs.values() for f in _floats(o))


def _floats(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in _floats(v)]
    if isinstance(value, list):
        return [f for v in value for f in _floats(v)]
    return []


async def test_two_processes_sharing_a_cache_do_not_revoke_each_other(
        stack: Stack, tmp_path: Path) -> None:
    """Before: both re-registered the cached device id; the second registration revoked the
    first's token and its call failed (401). Each running process now holds its own
    identity slot, so both calls complete and hear each other."""
    cache, meeting = tmp_path / "shared", _meeting("shared-cache")
    assert (await _pinhole(stack, cache, "register"))[0] == 0  # an identity both would reuse
    before = await relayed(stack, "node-a")  # the module's earlier calls relayed some too
    parties = [await Party.start(stack, "--cache-dir", str(cache), "call", "--meeting",
                                 meeting, "--create", "--seconds", str(UNTIL_HUNG_UP_S),
                                 "--json") for _ in range(2)]
    await media_between(stack, meeting, since=before)  # both in, hearing each other: hang up
    calls = await hang_up_all(parties)
    assert calls[0]["participant_id"] != calls[1]["participant_id"]
    assert all(set(c) == _documented_keys("call") for c in calls)
    assert all(c["packets_received"] > 0 for c in calls)
    # one --json shape with rounded numbers: no 91.18200000000002
    assert all(round(f, 3) == f for c in calls for f in _floats(c))


async def test_a_call_shows_progress_and_says_when_nobody_else_is_there(
        stack: Stack, tmp_path: Path) -> None:
    rc, out, err = await _pinhole(stack, tmp_path / "c", "call", "--meeting", _meeting("alone"),
                                  "--create", "--seconds", "2.2")
    assert rc == 0, err
    progress = [line for line in err.splitlines() if " s  udp/5004  sent " in line]
    assert len(progress) >= 2  # one a second: the rung, packets, loss
    assert "nobody else is in the meeting" in progress[-1]
    assert "loss" in progress[-1]
    assert "jitter_ms" in out and not re.search(r"\d\.\d{4,}", out)  # the table rounds
    assert "nobody else sent media in this meeting" in err


async def test_no_media_path_is_exit_4(tmp_path: Path) -> None:
    """A room device (UDP only, seeds' profile table) and a node without UDP listeners:
    nothing it may use gets through, so the call fails with exit 4 and says what to run."""
    async with running_stack([NodeSpec("node-a", "eu", 0, ("--no-udp",))],
                             state_dir=tmp_path / "stack") as stack:
        rc, out, err = await _pinhole(stack, tmp_path / "c", "--profile", "room", "--json",
                                      "call", "--meeting", "m", "--create", "--seconds", "1")
    assert rc == 4 and "netcheck" in _one_line(err)
    assert json.loads(out)["error"]["code"] == "no_media_path"
