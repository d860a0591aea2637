"""Secrets stay secret in a real loopback stack: file modes, ``ps``, logs and ``--json``.

Defect pinned down: ``stack.json`` (the enrollment key) was written 0644 in a 0755 directory;
the node secret was passed as ``--node-secret=...`` and every user saw it in
``ps``. docs/design.md "SRTP": "Keys never appear in logs." One stack (a node logging
JSON lines, the cloud logging text), one full call by the library (whose keys,
ICE password and token the test therefore knows) and one by ``pinhole call
--json``; then every log line and every output is searched for every secret.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import sys
from pathlib import Path

import aiohttp
import pytest

from client.device import Device
from lab.pki import ORG
from lab.stack import NodeSpec, running_stack
from wire.tls import client_context

pytestmark = pytest.mark.slow

MEETING = "mtg-7f3k9q"
SECRET_FILES = ("stack.json", "node-secret", "orgs.json", "cloud.key", "operator-token")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _argv_of_tree(root: int) -> list[str]:
    """The command lines ``ps`` shows for ``root`` and every descendant."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        try:
            out.append((Path("/proc") / str(pid) / "cmdline").read_bytes()
                       .replace(b"\0", b" ").decode())
        except OSError:
            continue
        todo += children.get(pid, [])
    return out


def _variants(secret: str) -> list[str]:
    """A secret as text, and its base64 forms where it is bytes in base64."""
    found = [secret]
    try:
        raw = base64.b64decode(secret, validate=True)
        found.append(raw.hex())
    except ValueError:
        pass
    return [s for s in found if len(s) >= 8]


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_running_stack_keeps_its_secrets(tmp_path: Path, log_format: str) -> None:
    state = tmp_path / "stack"
    nodes = [NodeSpec("node-a", "eu", 0, ("--log-format", log_format))]
    async with running_stack(nodes, state_dir=state) as stack:
        # files: 0700 directory, 0600 secrets
        assert _mode(state) == 0o700
        for name in SECRET_FILES:
            assert _mode(state / name) == 0o600, name
        # ps: no secret on any command line of the stack's processes
        secrets_ = {"node secret": stack.node_secret, "enrollment key": stack.enrollment_key,
                    "operator token": stack.operator_token}
        for proc in stack.processes:
            for argv in _argv_of_tree(proc.pid):
                for what, value in secrets_.items():
                    assert value not in argv, f"the {what} is on a command line: {argv}"
        # a full call: one participant through the library, one through the CLI
        device = Device(stack.api())
        registered = await device.register(ORG, stack.enrollment_key, "lib")
        await device.discover()
        await device.api.create_meeting(meeting_id=MEETING)
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "client", "--stack", str(state / "stack.json"), "--no-cache",
            "call", "--meeting", MEETING, "--seconds", "2", "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PINHOLE_CACHE_DIR": str(tmp_path / "cache")})
        joined = await device.join(MEETING)
        session = await device.connect(joined)

        async def speak() -> None:  # for as long as the CLI's call lasts, however slow it starts
            i = 0
            while True:
                session.send_audio(i.to_bytes(4, "big") + bytes(156))
                i += 1
                await asyncio.sleep(0.02)

        speaker = asyncio.create_task(speak())
        try:
            out, err = await asyncio.wait_for(cli.communicate(), 90)
        finally:
            speaker.cancel()
        # /metrics answers anyone: counts only, no meeting, participant, device or node ids
        metrics = ""
        async with aiohttp.ClientSession() as http:
            for url in (stack.cloud_url + "/metrics", stack.nodes[0]["metrics_url"]):
                async with http.get(url, ssl=client_context(stack.ca_file)) as response:
                    metrics += await response.text()
        assert "pinhole_" in metrics
        for identifier in (MEETING, joined.participant_id, registered.device_id,
                           json.loads(out)["participant_id"]):
            assert identifier not in metrics
        session.close()
        await device.api.leave(joined.meeting_id, joined.participant_id)
        await device.api.close()
        assert cli.returncode == 0, err.decode()
        assert json.loads(out)["packets_received"] > 0  # the call really carried media
        secrets_.update({
            "device token": registered.token.get_secret_value(),
            "ICE password": joined.ice.pwd.get_secret_value(),
            "SRTP key client→node": joined.srtp.client_to_node.get_secret_value(),
            "SRTP key node→client": joined.srtp.node_to_client.get_secret_value(),
            "cloud TLS key": (state / "cloud.key").read_text().splitlines()[1],
        })
    texts = {"pinhole call stdout": out.decode(), "pinhole call stderr": err.decode()}
    for log in state.glob("*.log"):
        texts[log.name] = log.read_text()
    if log_format == "json":
        assert any(line.startswith("{") for line in texts["node-a.log"].splitlines())
    assert "leg " in texts["node-a.log"] and "leg " in texts["cloud.log"]  # they did log
    for where, text in texts.items():
        for what, value in secrets_.items():
            for variant in _variants(value):
                assert variant not in text, f"the {what} is in {where}"


async def test_pinhole_lab_pki_writes_secrets_0600_in_a_0700_directory(tmp_path: Path) -> None:
    out = tmp_path / "pki"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lab", "pki", "--out", str(out), "--cloud-url",
        "https://cloud:443", "--name", "cloud", stdout=asyncio.subprocess.PIPE)
    await proc.communicate()
    assert proc.returncode == 0
    assert _mode(out) == 0o700
    for name in SECRET_FILES:
        assert _mode(out / name) == 0o600, name
