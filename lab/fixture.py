"""Pinhole as a test fixture: a stack, an enterprise network in front of it, and what a
client under test needs to join — for tests of *your* client's fallback paths.

Two ways in, both context managers that stop and remove everything they started on
every exit path (a failing test, an exception, Ctrl-C):

- :func:`loopback` — a cloud and media nodes on a ``127.x`` block (no root);
- :func:`enterprise` — the firewall lab (root): the same stack in the lab's internet
  namespace, an enterprise network behind a gateway that loads a named firewall profile
  (``lab/profiles``), tinyproxy on the enterprise's proxy host. Clients run *inside* the
  enterprise network: a process (:meth:`Pinhole.start`, :meth:`Pinhole.run`) through
  ``ip netns exec``, an asyncio client (:meth:`Pinhole.run_async`) on a thread that
  entered the namespace (:mod:`lab.inside`).

A client is given what it needs to join as environment variables and files
(:meth:`Pinhole.environment`, documented in docs/testing-your-client.md), and a test
reads what happened: the client's own report, the cloud's meeting view (each
participant's node and the transport its leg latched on), the media nodes' counters.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import aiohttp

from client.api import CloudApi
from lab.firewall import PROFILES as ALL_PROFILES
from lab.inside import LoopThread
from lab.netns import PROXY_HOST, Lab
from lab.pki import ORG
from lab.stack import REGIONS, NodeSpec, start_stack, stop_stack
from wire.models import DeviceRegistration, MeetingView
from wire.tls import client_context
from wire.transports import RungName

T = TypeVar("T")
PROXY_PORT: Final = 8888  # lab/proxy/tinyproxy.conf
#: each profile the fixture documents: what the enterprise's firewall lets out, and the
#: transport Pinhole's own client ends on there (docs/design.md, "The firewall lab")
PROFILES: Final[Mapping[str, tuple[str, RungName]]] = {
    "open": ("everything", RungName.UDP_5004),
    "udp-5004": ("UDP 5004 and TCP 443 only", RungName.UDP_5004),
    "udp-33434": ("UDP 33434 and TCP 443 only", RungName.UDP_33434),
    "no-udp": ("no UDP at all: TCP 5004 and TCP 443 only", RungName.TCP_5004),
    "tls-only": ("TCP 443 only", RungName.TLS_443),
    "proxy-only": ("nothing but the HTTP proxy host, to TCP 443 (CONNECT)",
                   RungName.HTTP_PROXY),
}
UNTIL_HUNG_UP: Final = "600"  # ``pinhole call --seconds``: it talks until hang_up()


class FixtureError(Exception):
    """The fixture could not do what was asked; the message says what to do instead."""


@dataclass(frozen=True, slots=True)
class Finished:
    """A client process that ended: its exit status and what it printed."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        """Its stdout as one JSON document (``pinhole --json``'s report), checked: a client
        that failed raises with what it said on stderr."""
        if self.returncode != 0:
            raise FixtureError(f"{' '.join(self.argv)} exited {self.returncode}: "
                               f"{self.stderr.strip()[-2000:]}")
        report: dict[str, Any] = json.loads(self.stdout)
        return report


class Client:
    """A client process started by :meth:`Pinhole.start`; its output goes to files in the
    stack's state directory, so a chatty client never blocks on a full pipe."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], folder: Path,
                 meeting_id: str) -> None:
        self.argv = tuple(argv)
        self.meeting_id = meeting_id
        self.env = dict(env)
        folder.mkdir(parents=True)
        self._out, self._err = folder / "stdout", folder / "stderr"
        with self._out.open("wb") as out, self._err.open("wb") as err:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err)

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout_s: float = 120.0) -> Finished:
        """Wait for it to end by itself."""
        returncode = self.proc.wait(timeout=timeout_s)
        return Finished(self.argv, returncode, self._out.read_text(errors="replace"),
                        self._err.read_text(errors="replace"))

    def hang_up(self, timeout_s: float = 60.0) -> Finished:
        """Ctrl-C (SIGINT) unless it already ended: ``pinhole call`` then leaves the
        meeting and prints its report, as at the end of its ``--seconds``."""
        if self.running():
            self.proc.send_signal(signal.SIGINT)
        return self.wait(timeout_s)

    def kill(self) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


@dataclass
class Pinhole:
    """A running stack as a test sees it: loopback (``lab`` is None) or behind the firewall
    lab's enterprise network. Made by :func:`loopback` or :func:`enterprise`."""

    state_dir: Path
    observer: LoopThread  # where the cloud is reached from: loopback, or inside ``inet``
    lab: Lab | None = None
    clients: list[Client] = field(default_factory=list)
    _inside: LoopThread | None = field(default=None, repr=False)
    _started: int = field(default=0, repr=False)  # clients ever started: their folders
    _watcher: CloudApi | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ what it is

    @property
    def stack_json(self) -> Path:
        """The stack's ``stack.json``: the cloud, its CA and pins, the orgs' keys."""
        return self.state_dir / "stack.json"

    @property
    def described(self) -> dict[str, Any]:
        described: dict[str, Any] = json.loads(self.stack_json.read_text())
        return described

    @property
    def cloud_url(self) -> str:
        return str(self.described["cloud"])

    @property
    def ca_file(self) -> str:
        """The CA certificate the cloud's (and coturn's) certificates chain to."""
        return str(self.described["ca"])

    @property
    def org(self) -> str:
        return ORG

    @property
    def enrollment_key(self) -> str:
        return str(self.described["orgs"][ORG]["enrollment_key"])

    @property
    def pins(self) -> tuple[str, ...]:
        return tuple(self.described.get("pins", ()))

    @property
    def profile(self) -> str | None:
        """The enterprise firewall's profile now (None on loopback)."""
        return self.lab.profile if self.lab is not None else None

    @property
    def proxy_url(self) -> str | None:
        """The enterprise's HTTP proxy under ``proxy-only`` (the one way out there)."""
        if self.profile == "proxy-only":
            return f"http://{PROXY_HOST}:{PROXY_PORT}"
        return None

    def use_profile(self, profile: str) -> None:
        """Load another firewall profile now (mid-test too): the gateway's ruleset is
        replaced and the flows the last one admitted are forgotten."""
        if self.lab is None:
            raise FixtureError("a loopback stack has no firewall: use the pinhole_lab "
                               "fixture (lab.fixture.enterprise) for profiles")
        if profile not in ALL_PROFILES:
            raise FixtureError(f"unknown profile {profile!r}; choose one of "
                               f"{', '.join(ALL_PROFILES)}")
        self.lab.load_profile(profile)

    # ------------------------------------------------------------------ the cloud's side

    def observe(self, make: Callable[[], Awaitable[T]], timeout_s: float = 120.0) -> T:
        """Run ``make()`` where the cloud and nodes are reachable whatever the profile (the
        internet side), e.g. with :meth:`api`."""
        return self.observer.run(make, timeout_s)

    def api(self) -> CloudApi:
        """A new, unregistered API client of the cloud (pins checked); use it inside
        :meth:`observe` (or :meth:`run_async` on loopback) and close it there."""
        return CloudApi(self.cloud_url, client_context(self.ca_file), pins=self.pins)

    async def _watching(self) -> CloudApi:
        if self._watcher is None:
            self._watcher = await self._registered("pinhole-fixture")
        return self._watcher

    async def _registered(self, name: str) -> CloudApi:
        api = self.api()
        await api.register(DeviceRegistration.model_validate(
            {"org": ORG, "enrollment_key": self.enrollment_key, "name": name,
             "profile": "desktop"}))
        return api

    def new_meeting(self, prefix: str = "meeting") -> str:
        """Create a meeting with a fresh id; its id."""
        meeting_id = f"{prefix}-{secrets.token_hex(4)}"

        async def create() -> str:
            return (await (await self._watching()).create_meeting(meeting_id=meeting_id)).id

        return self.observe(create)

    def meeting(self, meeting_id: str) -> MeetingView:
        """The cloud's view: each participant's device, node and latched transport."""

        async def view() -> MeetingView:
            return await (await self._watching()).meeting(meeting_id)

        return self.observe(view)

    def transports(self, meeting_id: str) -> dict[str, str | None]:
        """Device id → the transport its leg latched on, as the cloud saw it (None: not
        latched yet). A WebRTC endpoint relayed by TURN shows the node's rung it reached."""
        return {p.device_id: (str(p.transport) if p.transport else None)
                for p in self.meeting(meeting_id).participants}

    def node_counters(self, node_id: str) -> dict[str, float]:
        """A media node's Prometheus counters (``pinhole_node_*``), series → value."""
        url = next(n["metrics_url"] for n in self.described["nodes"] if n["id"] == node_id)

        async def scrape() -> str:
            async with aiohttp.ClientSession() as http, http.get(url) as response:
                return await response.text()

        return parse_metrics(self.observe(scrape))

    def wait_for_media(self, meeting_id: str, parties: int = 2, *, packets: int = 50,
                       timeout_s: float = 60.0) -> MeetingView:
        """Wait until ``parties`` participants' legs latched (the cloud's view) and media
        flows: with two or more, their node relayed ``packets`` more; with one, the node
        received ``packets`` more from it (its client talks: a ``pinhole call`` hangs up on
        Ctrl-C from then on). The meeting view then."""
        deadline = time.monotonic() + timeout_s
        view = self.meeting(meeting_id)
        while not (len(view.participants) >= parties
                   and all(p.transport for p in view.participants)):
            if time.monotonic() > deadline:
                seen = [(p.device_id, p.node_id, p.transport) for p in view.participants]
                raise FixtureError(f"{parties} participant(s) of {meeting_id} did not latch "
                                   f"in {timeout_s:.0f} s; seen (device, node, rung): {seen}")
            time.sleep(0.1)
            view = self.meeting(meeting_id)
        node = view.participants[0].node_id
        direction = "in" if parties < 2 else "out"
        key = f'pinhole_node_packets_total{{direction="{direction}"}}'
        start = self.node_counters(node).get(key, 0.0)
        while self.node_counters(node).get(key, 0.0) < start + packets:
            if time.monotonic() > deadline:
                did = "received" if parties < 2 else "relayed"
                raise FixtureError(f"{node} {did} fewer than {packets} packets in "
                                   f"{meeting_id} within {timeout_s:.0f} s")
            time.sleep(0.1)
        return self.meeting(meeting_id)

    # ------------------------------------------------------------------ the client's side

    def environment(self, meeting_id: str | None = None, name: str = "client"
                    ) -> dict[str, str]:
        """What a client needs to join, as environment variables (a device is registered
        for it: its id and token). docs/testing-your-client.md lists them."""

        async def register() -> tuple[str, str]:
            api = await self._registered(name)
            try:
                assert api.device_id is not None and api.token is not None
                return api.device_id, api.token
            finally:
                await api.close()

        device_id, token = self.observe(register)
        env = {
            "PINHOLE_STACK": str(self.stack_json),
            "PINHOLE_CLOUD": self.cloud_url,
            "PINHOLE_CA": self.ca_file,
            "SSL_CERT_FILE": self.ca_file,  # OpenSSL's default trust: the stack's CA
            "PINHOLE_PIN": ",".join(self.pins),
            "PINHOLE_ORG": self.org,
            "PINHOLE_ENROLLMENT_KEY": self.enrollment_key,
            "PINHOLE_NAME": name,
            "PINHOLE_DEVICE_ID": device_id,
            "PINHOLE_DEVICE_TOKEN": token,
            "PINHOLE_NO_CACHE": "1",
        }
        if meeting_id is not None:
            env["PINHOLE_MEETING"] = meeting_id
            env["PINHOLE_WEBRTC_URL"] = f"{self.cloud_url}/v1/meetings/{meeting_id}/webrtc"
        if self.proxy_url is not None:
            env["PINHOLE_PROXY"] = self.proxy_url
        return env

    def start(self, argv: Sequence[str], *, meeting: str | None = None, name: str = "client",
              env: Mapping[str, str] | None = None) -> Client:
        """Start ``argv`` inside the enterprise network (beside the stack on loopback) with
        :meth:`environment` added to this process's environment (``env`` last). Without
        ``meeting`` a new meeting is created for it (``Client.meeting_id``)."""
        meeting_id = meeting or self.new_meeting()
        full = {**os.environ, **self.environment(meeting_id, name), **(env or {})}
        program = _resolve(argv[0])
        prefix = self.lab.exec_prefix(self.lab.ent) if self.lab is not None else []
        self._started += 1
        folder = self.state_dir / "clients" / f"{self._started:03d}-{name}"
        client = Client([*prefix, program, *argv[1:]], full, folder, meeting_id)
        self.clients.append(client)
        return client

    def run(self, argv: Sequence[str], *, meeting: str | None = None, name: str = "client",
            env: Mapping[str, str] | None = None, timeout_s: float = 120.0) -> Finished:
        """:meth:`start`, then wait for it to end by itself."""
        return self.start(argv, meeting=meeting, name=name, env=env).wait(timeout_s)

    def run_async(self, make: Callable[[], Awaitable[T]], timeout_s: float = 120.0) -> T:
        """Run an asyncio client ``make()`` inside the enterprise network (on loopback: on
        a loop of its own); every socket it opens is there. Its result, or what it raised."""
        if self._inside is None:
            self._inside = LoopThread(self.lab.ent if self.lab is not None else None,
                                      "pinhole-client")
        return self._inside.run(make, timeout_s)

    def end_clients(self) -> None:
        """Kill the clients still running (a test's end)."""
        for client in self.clients:
            client.kill()
        self.clients.clear()

    def close(self) -> None:
        """Stop what this handle runs itself: clients, its loops, its API sessions."""
        self.end_clients()
        if self._watcher is not None:
            watcher, self._watcher = self._watcher, None
            with contextlib.suppress(Exception):
                self.observe(watcher.close, timeout_s=10)
        if self._inside is not None:
            self._inside.close()
            self._inside = None


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition → series (name with labels) → value, ``pinhole_node_*``."""
    found: dict[str, float] = {}
    for match in re.finditer(r"^(pinhole_node_\S+) (\S+)$", text, re.M):
        with contextlib.suppress(ValueError):
            found[match.group(1)] = float(match.group(2))
    return found


def _resolve(program: str) -> str:
    """``program`` on PATH, else beside this Python (a venv's ``bin``, not always on PATH:
    ``pinhole`` installed with Pinhole)."""
    here = os.path.dirname(sys.executable)
    found = shutil.which(program) or shutil.which(program, path=here)
    if found is None:
        raise FixtureError(f"{program!r} is neither on PATH nor in {here}: give its path")
    return found


@contextlib.contextmanager
def loopback(nodes: Sequence[NodeSpec] = REGIONS, *, turn: bool = False,
             state_dir: Path | None = None) -> Iterator[Pinhole]:
    """``with loopback() as pinhole:`` — a cloud and ``nodes`` on a loopback block (no root),
    stopped and removed on every exit path."""
    with contextlib.ExitStack() as cleanup:
        if state_dir is None:
            state_dir = Path(cleanup.enter_context(
                tempfile.TemporaryDirectory(prefix="pinhole-fixture-")))
        observer = LoopThread(name="pinhole-observer")
        cleanup.callback(observer.close)
        stack = observer.run(lambda: start_stack(state_dir, nodes, turn=turn), 120)
        cleanup.callback(lambda: observer.run(lambda: stop_stack(stack), 60))
        pinhole = Pinhole(state_dir, observer)
        cleanup.callback(pinhole.close)
        yield pinhole


@contextlib.contextmanager
def enterprise(profile: str = "open", *, state_dir: Path | None = None) -> Iterator[Pinhole]:
    """``with enterprise("no-udp") as pinhole:`` — the firewall lab (root): the stack with
    coturn in the internet namespace, the enterprise network behind ``profile``,
    tinyproxy on its proxy host. Namespaces, their firewall tables and every process in
    them, and the state directory, are removed on every exit path."""
    if os.geteuid() != 0:
        raise FixtureError("the firewall lab needs root (network namespaces, nftables): "
                           "run as root, or use loopback() / the pinhole_stack fixture")
    for tool in ("ip", "nft", "tinyproxy"):
        if shutil.which(tool) is None:
            raise FixtureError(f"the firewall lab needs {tool!r} on PATH "
                               "(Debian packages iproute2, nftables, tinyproxy)")
    with contextlib.ExitStack() as cleanup:
        if state_dir is None:
            state_dir = Path(cleanup.enter_context(
                tempfile.TemporaryDirectory(prefix="pinhole-fixture-")))
        fw = Lab(profile="open")
        fw.up()
        cleanup.callback(fw.down)  # kills what runs inside, then removes the namespaces
        fw.start_stack(state_dir)
        fw.start_proxy()
        observer = LoopThread(fw.inet, "pinhole-observer")
        cleanup.callback(observer.close)
        pinhole = Pinhole(state_dir, observer, lab=fw)
        cleanup.callback(pinhole.close)
        pinhole.use_profile(profile)
        yield pinhole
