"""The loopback stack: a cloud and media nodes as real processes on 127.x addresses.

Each stack takes its own ``127.A.B.0/24`` block, so nodes keep their real
ports (5004, 33434, 443 …) and several stacks can run side by side.  Nothing
needs root; a process that may not bind below 1024 takes the documented high
port and the node list carries what is really in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.api import CloudApi
from lab.net import free_block
from lab.pki import ORG, OTHER_ORG, Pki, write_pki
from wire.models import DeviceRegistration
from wire.tls import client_context

METRICS_PORT = 9100


@dataclass(frozen=True, slots=True)
class NodeSpec:
    id: str
    region: str
    simulated_rtt_ms: int = 0
    extra_args: tuple[str, ...] = ()
    org: str = ""  # set: a hybrid node of this org (``python -m hybrid_node``)

    @property
    def kind(self) -> str:
        return "hybrid" if self.org else "cloud"


REGIONS: tuple[NodeSpec, ...] = (
    NodeSpec("node-near", "eu-near", 10),
    NodeSpec("node-mid", "us-east", 40),
    NodeSpec("node-far", "ap-far", 90),
)
#: ``pinhole-lab stack --hybrid``: the org's on-prem node, next to the regional ones.
HYBRID = NodeSpec("hybrid-acme", "on-prem", 0, org=ORG)


class StackError(Exception):
    """The stack could not start; the message says which process and why."""




@dataclass
class Stack:
    """A running stack; use ``async with Stack.start(...)``-style via :func:`running_stack`."""

    state_dir: Path
    prefix: str
    cloud_url: str = ""
    ca_file: str = ""
    enrollment_key: str = ""
    node_secret: str = ""
    other_enrollment_key: str = ""  # OTHER_ORG's: a device that must not see ORG's hybrid
    operator_token: str = ""
    nodes: list[dict[str, Any]] = field(default_factory=list)
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """What ``stack.json`` holds: all a client needs to use this stack."""
        return Pki(self.state_dir, self.enrollment_key, self.node_secret,
                   self.other_enrollment_key, self.operator_token).stack_json(
            self.cloud_url, self.nodes)

    def api(self) -> CloudApi:
        return CloudApi(self.cloud_url, client_context(self.ca_file))

    async def register(self, name: str, profile: str = "desktop", org: str = ORG) -> CloudApi:
        api = self.api()
        await api.register(DeviceRegistration.model_validate(
            {"org": org, "enrollment_key": self.key_of(org), "name": name, "profile": profile}
        ))
        return api

    def key_of(self, org: str) -> str:
        """The enrollment key of ``org`` (``ORG`` or ``OTHER_ORG``)."""
        return self.other_enrollment_key if org == OTHER_ORG else self.enrollment_key

    def process_of(self, node_id: str) -> asyncio.subprocess.Process:
        """The running process of node ``node_id`` (tests kill it)."""
        for node, proc in zip(self.nodes, self.processes[1:], strict=False):
            if node["id"] == node_id:
                return proc
        raise KeyError(node_id)


async def _wait_for_file(path: Path, proc: asyncio.subprocess.Process, what: str,
                         timeout_s: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise StackError(f"{what} exited with code {proc.returncode}; see {path.parent}/*.log")
        if path.exists():
            with contextlib.suppress(ValueError):
                data: dict[str, Any] = json.loads(path.read_text())
                return data
        await asyncio.sleep(0.05)
    raise StackError(f"{what} did not come up within {timeout_s:.0f} s; see {path.parent}/*.log")


async def _spawn(state: Path, name: str, args: Sequence[str]) -> asyncio.subprocess.Process:
    log = (state / f"{name}.log").open("wb")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, *args, stdout=log, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


async def start_stack(
    state_dir: Path,
    nodes: Sequence[NodeSpec] = REGIONS,
    *,
    cloud_args: Sequence[str] = (),
    progress: Callable[[str], None] = lambda _: None,
    prefix: str | None = None,
) -> Stack:
    """Start a cloud and ``nodes``; return once every node is registered and healthy."""
    state_dir.mkdir(parents=True, exist_ok=True)
    # the cloud on PREFIX.1, nodes on .2, .3 …: a random loopback block unless given
    stack = Stack(state_dir=state_dir, prefix=prefix or free_block())
    try:
        await _start(stack, nodes, cloud_args, progress)
    except BaseException:
        await stop_stack(stack)
        raise
    return stack


async def _start(
    stack: Stack, nodes: Sequence[NodeSpec], cloud_args: Sequence[str],
    progress: Callable[[str], None],
) -> None:
    state = stack.state_dir
    for stale in ("stack.json", "cloud.json", *(f"{spec.id}.json" for spec in nodes)):
        (state / stale).unlink(missing_ok=True)  # a reused state dir: wait for the new ones
    cloud_ip = stack.prefix + ".1"
    pki = write_pki(state, [cloud_ip, "localhost"])
    stack.ca_file = str(pki.ca_file)
    stack.enrollment_key, stack.node_secret = pki.enrollment_key, pki.node_secret
    stack.other_enrollment_key = pki.other_enrollment_key
    stack.operator_token = pki.operator_token
    progress(f"starting the cloud on {cloud_ip}")
    # "=": a secret may start with "-", which argparse would take for an option
    env_secret = [f"--node-secret={stack.node_secret}"]
    cloud = await _spawn(state, "cloud", [
        "-m", "cloud", "--listen", cloud_ip, "--port", "443",
        "--cert", str(pki.cert_file), "--key", str(pki.key_file),
        "--orgs", str(pki.orgs_file), *env_secret,
        "--operator-token-file", str(pki.operator_token_file),
        "--state-file", str(state / "cloud.json"), *cloud_args,
    ])
    stack.processes.append(cloud)
    stack.cloud_url = (await _wait_for_file(state / "cloud.json", cloud, "the cloud"))["url"]
    for i, spec in enumerate(nodes, start=2):
        address = f"{stack.prefix}.{i}"
        progress(f"starting {spec.kind} media node {spec.id} ({spec.region}, simulated RTT "
                 f"{spec.simulated_rtt_ms} ms) on {address}")
        # a hybrid node runs its own package with its org and the org's hybrid node secret
        who = (["-m", "hybrid_node", "--org", spec.org,
                "--node-secret-file", str(pki.hybrid_secret_file(spec.org))] if spec.org
               else ["-m", "media_node", *env_secret])
        proc = await _spawn(state, spec.id, [
            *who, "--cloud", stack.cloud_url, "--ca", stack.ca_file,
            "--node-id", spec.id, "--region", spec.region,
            "--advertise", address, "--simulated-rtt-ms", str(spec.simulated_rtt_ms),
            "--metrics-listen", f"{address}:{METRICS_PORT}",
            "--state-file", str(state / f"{spec.id}.json"), *spec.extra_args,
        ])
        stack.processes.append(proc)
        info = await _wait_for_file(state / f"{spec.id}.json", proc, f"media node {spec.id}")
        stack.nodes.append({"id": spec.id, "kind": spec.kind, "org": spec.org or None,
                            "region": spec.region, "address": address,
                            "endpoints": info.get("endpoints", []),
                            "metrics_url": f"http://{address}:{METRICS_PORT}/metrics"})
    await _wait_healthy(stack, {n.id for n in nodes if not n.org})
    for org in {n.org for n in nodes if n.org}:  # a hybrid node is listed to its org only
        await _wait_healthy(stack, {n.id for n in nodes if n.org == org}, org=org)
    (state / "stack.json").write_text(json.dumps(stack.describe(), indent=2))
    progress(f"stack ready: {stack.cloud_url}, {len(nodes)} media node(s); "
             f"settings in {state / 'stack.json'}")
    progress(f"operator console: {stack.cloud_url}/ (operator token {stack.operator_token}, "
             f"also in {pki.operator_token_file})")


async def _wait_healthy(stack: Stack, ids: set[str], timeout_s: float = 20.0,
                        org: str = ORG) -> None:
    api = await stack.register("stack-check", org=org)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            listed = await api.nodes()
            if ids <= {n.id for n in listed.nodes if n.healthy}:
                return
            await asyncio.sleep(0.1)
    finally:
        await api.close()
    raise StackError(f"media nodes {sorted(ids)} did not all register with the cloud; "
                     f"see {stack.state_dir}/*.log")


async def stop_stack(stack: Stack) -> None:
    """Stop every process (SIGTERM, then SIGKILL after 5 s) and wait for it."""
    for proc in reversed(stack.processes):
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    for proc in stack.processes:
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    stack.processes.clear()


@contextlib.asynccontextmanager
async def running_stack(
    nodes: Sequence[NodeSpec] = REGIONS,
    *,
    state_dir: Path | None = None,
    cloud_args: Sequence[str] = (),
    progress: Callable[[str], None] = lambda _: None,
    prefix: str | None = None,
) -> Any:
    """``async with running_stack() as stack:`` — a stack stopped on every exit path."""
    with contextlib.ExitStack() as cleanup:
        if state_dir is None:
            state_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="pinhole-")))
        stack = await start_stack(state_dir, nodes, cloud_args=cloud_args, progress=progress,
                                  prefix=prefix)
        try:
            yield stack
        finally:
            await stop_stack(stack)
