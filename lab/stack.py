"""The loopback stack: a cloud and media nodes as real processes on 127.x addresses.

Each stack takes its own ``127.A.B.0/24`` block, so nodes keep their real
ports (5004, 33434, 443 …) and several stacks can run side by side.  Nothing
needs root; a process that may not bind below 1024 takes the documented high
port and the node list carries what is really in use.

With ``store="redis"`` the stack starts its own ``redis-server``; with
``sentinel=True`` also a replica of it and three Sentinels (:mod:`lab.sentinel`),
and the cloud finds the primary through them (a ``redis+sentinel://`` store URL),
so the primary can be killed for real and the replica takes over. With
``replicas=N`` it runs N cloud processes on the store behind HAProxy
(:mod:`lab.haproxy`: TLS passed through, ``/readyz`` checked, a replica that is
not ready drained) that owns the cloud's address, so a replica can be killed or
hung for real while nodes and clients keep the one URL.

With ``turn=True`` (``pinhole-lab stack`` asks for it) the stack also runs coturn
(:mod:`lab.turn`): TURN over TLS for WebRTC endpoints, on 443 of its own address of the
block when it may bind it; the cloud mints its credentials (``GET /v1/turn``) and
``stack.json`` names its URL (``"turn": {"url": ...}``, null without coturn). Tests that
need no TURN start none: a stack comes up faster without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.api import CloudApi
from lab import haproxy, sentinel
from lab.net import free_block, free_port, wait_for_port
from lab.pki import ORG, OTHER_ORG, Pki, private_directory, write_pki, write_secret
from lab.turn import TurnServer, answers, place, write_turn_files
from wire.address import Address
from wire.models import DeviceRegistration
from wire.tls import client_context

METRICS_PORT = 9100
#: A node whose port is held on every address is started again, this many times in all,
#: this far apart (:func:`start_node`).
BIND_ATTEMPTS = 10
BIND_PAUSE_S = 0.5


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
    operator_token: str = ""  # what the dashboard and other operator pages require
    pins: tuple[str, ...] = ()  # the cloud's SPKI pins, primary and backup (stack.json)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    # by name: "cloud" (or "cloud-1" … with replicas), "redis" (with Sentinel also
    # "redis-replica", "sentinel-1" … "sentinel-3"), "balancer" (HAProxy), each node id
    named: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    specs: dict[str, NodeSpec] = field(default_factory=dict)
    replica_urls: list[str] = field(default_factory=list)
    store_url: str = "memory"
    turn: TurnServer | None = None  # coturn, when turnserver is installed (lab.turn)
    balancer_stats: Address | None = None  # HAProxy's statistics (lab.haproxy.server_states)
    sentinels: list[Address] = field(default_factory=list)  # with sentinel=True
    # how each named process was started, (program, arguments): what restart() runs again
    commands: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)

    def signal(self, name: str, sig: int) -> None:
        """Send ``sig`` (SIGKILL, SIGSTOP, SIGCONT …) to the process called ``name``."""
        self.named[name].send_signal(sig)

    async def kill(self, name: str) -> None:
        """SIGKILL the process called ``name`` (resuming it first if stopped) and reap it."""
        proc = self.named[name]
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
                proc.send_signal(signal.SIGCONT)
        await proc.wait()

    async def restart(self, name: str, args: Sequence[str] | None = None,
                      ) -> asyncio.subprocess.Process:
        """Kill the process called ``name`` if it runs and start it again as it was started,
        or with ``args`` in its place (kept for the next restart); return the new process
        without waiting for it to be ready (a media node: :meth:`restart_node`)."""
        program, started = self.commands[name]
        await self.kill(name)
        old = self.named[name]
        proc = await _spawn(self, name, started if args is None else args, program=program)
        self.processes[self.processes.index(old)] = proc
        self.named[name] = proc
        return proc

    async def restart_node(self, node_id: str) -> None:
        """Kill node ``node_id`` if it runs, start it again, wait until the cloud lists it."""
        await self.kill(node_id)
        await start_node(self, self.specs[node_id])
        await wait_healthy(self, {node_id}, org=self.specs[node_id].org or ORG)

    @property
    def pki(self) -> Pki:
        """The stack's keys and secrets (their files are in ``state_dir``)."""
        return Pki(self.state_dir, self.enrollment_key, self.node_secret,
                   self.other_enrollment_key, self.pins)

    def describe(self) -> dict[str, Any]:
        """What ``stack.json`` holds: all a client needs to use this stack."""
        described = self.pki.stack_json(self.cloud_url, self.nodes)
        described.update({"store": self.store_url, "replicas": self.replica_urls,
                          "sentinels": [str(s) for s in self.sentinels],
                          "processes": {name: proc.pid for name, proc in self.named.items()},
                          # the secret stays in turn-secret: devices get it from GET /v1/turn
                          "turn": {"url": self.turn.url} if self.turn is not None else None})
        return described

    def api(self) -> CloudApi:
        return CloudApi(self.cloud_url, client_context(self.ca_file), pins=self.pins)

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


def last_words(log: Path, limit: int = 300) -> str:
    """The last line a process wrote to ``log``, for an error that outlives the file (a
    temporary state directory is removed when the stack stops)."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    said = [line for line in lines if line]
    return said[-1][:limit] if said else ""


async def _wait_for_file(path: Path, proc: asyncio.subprocess.Process, what: str,
                         timeout_s: float = 20.0) -> dict[str, Any]:
    """Wait for the state file a process writes once it listens (its log is the file of the
    same name ending in .log)."""
    log = path.with_suffix(".log")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            said = last_words(log)
            raise StackError(f"{what} exited with code {proc.returncode}"
                             + (f": {said!r}" if said else "") + f" (its log: {log})")
        if path.exists():
            with contextlib.suppress(ValueError):
                data: dict[str, Any] = json.loads(path.read_text())
                return data
        await asyncio.sleep(0.05)
    said = last_words(log)
    raise StackError(f"{what} did not come up within {timeout_s:.0f} s"
                     + (f"; it last said {said!r}" if said else "") + f" (its log: {log})")


async def _spawn(stack: Stack, name: str, args: Sequence[str],
                 program: str = sys.executable) -> asyncio.subprocess.Process:
    stack.commands[name] = (program, tuple(args))
    log = (stack.state_dir / f"{name}.log").open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            program, *args, stdout=log, stderr=asyncio.subprocess.STDOUT,
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
    store: str = "memory",
    replicas: int = 1,
    turn: bool = False,
    sentinel: bool = False,
) -> Stack:
    """Start a cloud and ``nodes``; return once every node is registered and healthy.

    ``store``: ``memory``, ``redis`` (a redis-server the stack starts) or a
    ``redis://`` URL; ``sentinel`` (with ``store="redis"``): a replica and three
    Sentinels too; ``replicas``: cloud processes behind HAProxy; ``turn``: coturn too
    (``pinhole-lab stack`` asks for it; a missing turnserver is an error).
    """
    if sentinel and store != "redis":
        raise StackError("Sentinel needs the stack's own Redis: --store redis --sentinel")
    private_directory(state_dir)  # it holds stack.json, keys and secrets: 0700
    # the cloud on PREFIX.1, nodes on .2, .3 …: a random loopback block unless given
    stack = Stack(state_dir=state_dir, prefix=prefix or free_block())
    try:
        await _start(stack, nodes, cloud_args, progress, store, replicas, turn, sentinel)
    except BaseException:
        await stop_stack(stack)
        raise
    return stack


async def _start(
    stack: Stack, nodes: Sequence[NodeSpec], cloud_args: Sequence[str],
    progress: Callable[[str], None], store: str, replicas: int, with_turn: bool,
    with_sentinel: bool = False,
) -> None:
    state = stack.state_dir
    for stale in ("stack.json", "cloud.json",
                  *(f"cloud-{i}.json" for i in range(1, replicas + 1)),
                  *(f"{spec.id}.json" for spec in nodes)):
        (state / stale).unlink(missing_ok=True)  # a reused state dir: wait for the new ones
    cloud_ip = stack.prefix + ".1"
    pki = write_pki(state, [cloud_ip, "localhost"])
    stack.ca_file = str(pki.ca_file)
    stack.enrollment_key, stack.node_secret = pki.enrollment_key, pki.node_secret
    stack.other_enrollment_key = pki.other_enrollment_key
    stack.operator_token, stack.pins = pki.operator_token, pki.pins
    if store == "redis" and with_sentinel:
        stack.store_url = await _start_sentinel(stack, progress)
    elif store == "redis":
        stack.store_url = await _start_redis(stack, progress)
    elif store != "memory":
        stack.store_url = store
    if replicas > 1 and stack.store_url == "memory":
        raise StackError("several cloud replicas need a shared store: --store redis")
    # secrets go by file, never on the command line where ps shows them; the PKI's token key
    # is every replica's: they verify each other's tokens
    token_key_file = pki.token_key_file
    # TURN over TLS for WebRTC endpoints: the cloud mints credentials for the coturn that
    # starts once the nodes are up (so the cloud and the nodes keep their places in
    # stack.processes)
    turn: TurnServer | None = None
    turn_args: list[str] = []
    if with_turn:
        turn = write_turn_files(pki, stack.prefix, *place(stack.prefix))
        turn_args = ["--turn-secret-file", str(turn.secret_file), "--turn-url", turn.url]
    common = [
        "-m", "cloud", "--listen", cloud_ip, "--cert", str(pki.cert_file),
        "--key", str(pki.key_file), "--orgs", str(pki.orgs_file),
        "--node-secret-file", str(pki.node_secret_file), "--store", stack.store_url,
        "--token-key-file", str(token_key_file),
        "--operator-token-file", str(pki.operator_token_file), *turn_args,
    ]
    if replicas <= 1:
        progress(f"starting the cloud on {cloud_ip}")
        cloud = await _spawn(stack, "cloud", [*common, "--port", "443",
                                              "--state-file", str(state / "cloud.json"),
                                              *cloud_args])
        stack.processes.append(cloud)
        stack.named["cloud"] = cloud
        stack.cloud_url = (await _wait_for_file(state / "cloud.json", cloud, "the cloud"))["url"]
        stack.replica_urls = [stack.cloud_url]
    else:
        backends: list[haproxy.Replica] = []
        for i in range(1, replicas + 1):
            port = free_port(cloud_ip)
            progress(f"starting cloud replica {i} of {replicas} on {cloud_ip}:{port}")
            name = f"cloud-{i}"
            proc = await _spawn(stack, name, [*common, "--port", str(port),
                                              "--state-file", str(state / f"{name}.json"),
                                              *cloud_args])
            stack.processes.append(proc)
            stack.named[name] = proc
            url = (await _wait_for_file(state / f"{name}.json", proc, f"cloud replica {i}"))["url"]
            stack.replica_urls.append(url)
            backends.append(haproxy.Replica(name, Address(cloud_ip, port)))
        stack.cloud_url = await _start_balancer(stack, cloud_ip, backends, progress)
    for spec in nodes:
        await start_node(stack, spec, progress)
    await wait_healthy(stack, {n.id for n in nodes if not n.org})
    for org in {n.org for n in nodes if n.org}:  # a hybrid node is listed to its org only
        await wait_healthy(stack, {n.id for n in nodes if n.org == org}, org=org)
    if turn is not None:
        await _start_turn(stack, turn, progress)
    write_secret(state / "stack.json", json.dumps(stack.describe(), indent=2))
    progress(f"stack ready: {stack.cloud_url}, {len(nodes)} media node(s); "
             f"settings in {state / 'stack.json'}")


async def _start_redis(stack: Stack, progress: Callable[[str], None]) -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError("--store redis needs redis-server (Debian package redis-server)")
    host = stack.prefix + ".1"
    port = free_port(host)
    progress(f"starting redis-server on {host}:{port}")
    proc = await _spawn(stack, "redis", [
        "--port", str(port), "--bind", host, "--save", "", "--appendonly", "no",
        "--dir", str(stack.state_dir)], program=binary)
    stack.processes.append(proc)
    stack.named["redis"] = proc
    await wait_for_port(host, port)
    return f"redis://{host}:{port}/0"


async def _start_turn(stack: Stack, server: TurnServer, progress: Callable[[str], None],
                      timeout_s: float = 10.0) -> None:
    """coturn (:mod:`lab.turn`) as ``server`` says; return once it answers TLS."""
    binary = shutil.which("turnserver")
    if binary is None:
        raise StackError("TURN needs coturn's turnserver (Debian package coturn)")
    address, port = server.address, server.port
    progress(f"starting coturn (TURN over TLS) on {address}:{port}")
    proc = await _spawn(stack, "turn", server.argv(), program=binary)
    stack.processes.append(proc)
    stack.named["turn"] = proc
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            said = last_words(server.log_file)
            raise StackError(f"coturn exited with code {proc.returncode}"
                             + (f": {said!r}" if said else "") + f" (its log: {server.log_file})")
        if await answers(server, stack.ca_file):
            stack.turn = server
            return
        await asyncio.sleep(0.05)
    said = last_words(server.log_file)
    raise StackError(f"coturn did not answer TLS on {address}:{port} within {timeout_s:.0f} s"
                     + (f"; it last said {said!r}" if said else "")
                     + f" (its log: {server.log_file})")


async def _start_sentinel(stack: Stack, progress: Callable[[str], None],
                          timeout_s: float = 30.0) -> str:
    """A primary (``redis``), its replica (``redis-replica``) and three Sentinels
    (``sentinel-1`` …); return the cloud's ``redis+sentinel://`` store URL once the
    Sentinels could fail the primary over."""
    server = shutil.which("redis-server")
    watcher = shutil.which("redis-sentinel")
    if server is None or watcher is None:
        raise StackError("--store redis --sentinel needs redis-server and redis-sentinel "
                         "(Debian packages redis-server and redis-sentinel)")
    host, state = stack.prefix + ".1", stack.state_dir
    primary, replica = Address(host, free_port(host)), Address(host, free_port(host))
    for name, listen, of in (("redis", primary, None), ("redis-replica", replica, primary)):
        progress(f"starting {name} on {listen}" + (f", a replica of {of}" if of else ""))
        proc = await _spawn(stack, name, sentinel.server_args(listen, str(state), name, of),
                            program=server)
        stack.processes.append(proc)
        stack.named[name] = proc
        await wait_for_port(host, listen.port)
    for i in range(1, 4):
        listen = Address(host, free_port(host))
        conf = state / f"sentinel-{i}.conf"
        conf.write_text(sentinel.sentinel_config(listen, primary, str(state)))
        progress(f"starting sentinel-{i} on {listen}")
        proc = await _spawn(stack, f"sentinel-{i}", [str(conf)], program=watcher)
        stack.processes.append(proc)
        stack.named[f"sentinel-{i}"] = proc
        stack.sentinels.append(listen)
        await wait_for_port(host, listen.port)
    deadline = time.monotonic() + timeout_s
    while missing := await sentinel.whole(stack.sentinels, replica):
        if time.monotonic() > deadline:
            raise StackError(f"Redis with Sentinel did not come up within {timeout_s:.0f} s: "
                             f"{missing} (logs: {state}/sentinel-*.log, redis*.log)")
        await asyncio.sleep(0.1)
    return sentinel.store_url(stack.sentinels)


async def _start_balancer(stack: Stack, host: str, backends: list[haproxy.Replica],
                          progress: Callable[[str], None], timeout_s: float = 10.0) -> str:
    """HAProxy (:mod:`lab.haproxy`) on ``host``:443 (8443 where it may not bind 443) in
    front of ``backends``; return the cloud URL once it accepts connections."""
    binary = shutil.which("haproxy")
    if binary is None:
        raise StackError("cloud replicas need HAProxy in front (Debian package haproxy)")
    state = stack.state_dir
    stats = Address(host, free_port(host))
    for port in (443, 8443):  # may not bind below 1024 here: the documented high port
        conf = state / "haproxy.cfg"
        conf.write_text(haproxy.config(Address(host, port), backends, stats))
        progress(f"starting HAProxy on {host}:{port} in front of "
                 f"{', '.join(str(b.address) for b in backends)}")
        proc = await _spawn(stack, "balancer", haproxy.argv(str(conf)), program=binary)
        try:
            await _wait_listening(proc, Address(host, port), timeout_s)
        except StackError:
            if port != 443:
                said = last_words(state / "balancer.log")
                raise StackError("HAProxy did not start" + (f": {said!r}" if said else "")
                                 + f" (its log: {state / 'balancer.log'})") from None
            continue
        stack.processes.append(proc)
        stack.named["balancer"] = proc
        stack.balancer_stats = stats
        return f"https://{host}:{port}"
    raise AssertionError("unreachable")


async def _wait_listening(proc: asyncio.subprocess.Process, address: Address,
                          timeout_s: float) -> None:
    """Return once ``proc`` accepts connections on ``address``; StackError if it exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise StackError(f"exited with code {proc.returncode}")
        try:
            _, writer = await asyncio.open_connection(*address)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()
    raise StackError(f"did not listen on {address} within {timeout_s:.0f} s")


async def start_node(stack: Stack, spec: NodeSpec,
                      progress: Callable[[str], None] = lambda _: None) -> None:
    state = stack.state_dir
    index = list(stack.specs).index(spec.id) if spec.id in stack.specs else len(stack.specs)
    stack.specs[spec.id] = spec
    address = f"{stack.prefix}.{index + 2}"
    (state / f"{spec.id}.json").unlink(missing_ok=True)
    progress(f"starting {spec.kind} media node {spec.id} ({spec.region}, simulated RTT "
             f"{spec.simulated_rtt_ms} ms) on {address}")
    # a hybrid node runs its own package with its org and the org's hybrid node secret;
    # secrets go by file, never on the command line where ps shows them
    who = (["-m", "hybrid_node", "--org", spec.org,
            "--node-secret-file", str(stack.pki.hybrid_secret_file(spec.org))] if spec.org
           else ["-m", "media_node", "--node-secret-file", str(stack.pki.node_secret_file)])
    for attempt in range(1, BIND_ATTEMPTS + 1):
        proc = await _spawn(stack, spec.id, [
            *who, "--cloud", stack.cloud_url, "--ca", stack.ca_file,
            "--node-id", spec.id, "--region", spec.region,
            "--advertise", address, "--simulated-rtt-ms", str(spec.simulated_rtt_ms),
            "--metrics-listen", f"{address}:{METRICS_PORT}",
            "--state-file", str(state / f"{spec.id}.json"), *spec.extra_args,
        ])
        old = stack.named.get(spec.id)
        if old is not None and old in stack.processes:
            stack.processes[stack.processes.index(old)] = proc
        else:
            stack.processes.append(proc)
        stack.named[spec.id] = proc
        try:
            info = await _wait_for_file(state / f"{spec.id}.json", proc,
                                        f"media node {spec.id}")
            break
        except StackError as exc:
            # UDP 33434 lies in the kernel's ephemeral range: another program's socket bound
            # to every address (0.0.0.0) may hold it for a moment, and then no address
            # can have it. Such a socket is short-lived (a probe, a call): try again.
            if "address already in use" not in str(exc) or attempt == BIND_ATTEMPTS:
                raise
            progress(f"media node {spec.id}: {last_words(state / f'{spec.id}.log')}; "
                     f"trying again ({attempt}/{BIND_ATTEMPTS - 1})")
            await asyncio.sleep(BIND_PAUSE_S)
    entry = {"id": spec.id, "kind": spec.kind, "org": spec.org or None,
             "region": spec.region, "address": address,
             "endpoints": info.get("endpoints", []),
             "metrics_url": f"http://{address}:{METRICS_PORT}/metrics"}
    stack.nodes = [n for n in stack.nodes if n["id"] != spec.id] + [entry]


async def wait_healthy(stack: Stack, ids: set[str], timeout_s: float = 20.0,
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
                proc.send_signal(signal.SIGCONT)  # a stopped process must see its SIGTERM
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
    store: str = "memory",
    replicas: int = 1,
    turn: bool = False,
    sentinel: bool = False,
) -> Any:
    """``async with running_stack() as stack:`` — a stack stopped on every exit path."""
    with contextlib.ExitStack() as cleanup:
        if state_dir is None:
            state_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="pinhole-")))
        stack = await start_stack(state_dir, nodes, cloud_args=cloud_args, progress=progress,
                                  prefix=prefix, store=store, replicas=replicas, turn=turn,
                                  sentinel=sentinel)
        try:
            yield stack
        finally:
            await stop_stack(stack)
