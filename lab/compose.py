"""``pinhole-lab compose``: run docker-compose.yml without a Docker engine (root).

The file is read through ``docker-compose config`` (or ``docker compose config``), so it
is validated, its anchors merged and its ``${VARS}`` filled in exactly as Compose does.
Then every service runs its own command with its own environment in a network namespace of
its own (``{run}-{service}``):

- each Compose network is a bridge in a namespace of its own (``{run}-net-{network}``);
  a service gets one veth per network (``eth0``, ``eth1`` …) with its ``ipv4_address``;
- names resolve as Compose's DNS resolves them: ``/etc/netns/{run}-{service}/hosts``
  lists the services that share a network with it (``ip netns exec`` mounts that file
  over ``/etc/hosts``), so a client on the internal enterprise network cannot look up
  ``cloud``, as in Docker;
- a named volume is a directory of the run, bind-mounted at its target inside the
  service's own mount namespace; ``sysctls`` are set in the namespace;
- ``depends_on`` conditions (``service_started``, ``service_healthy`` by running the
  service's ``healthcheck`` test inside its namespace, ``service_completed_successfully``)
  decide the start order;
- ``cap_add`` needs nothing: the emulation runs as root.

Services labelled ``pinhole.smoke`` end the smoke meeting (``pinhole-lab smoke wait``): the
run waits for them to finish and reads the clients' results where they wrote them, in the
volume the smoke service's ``--results`` names. ``user:`` is not emulated: every service runs
as root. Teardown, on every exit path, stops every process
inside, deletes the namespaces (and with them veths, bridges and nftables tables) and the
``/etc/netns`` entries.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab import smoke
from lab.firewall import HYBRID_PROFILES, LabError, run
from lab.netns import leftovers as netns_leftovers
from lab.netns import remove_namespaces

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
#: The hybrid node's service, added to COMPOSE_FILE for the hybrid profiles.
HYBRID_FILE = ROOT / "docker-compose.hybrid.yml"
#: The scaled deployment: three cloud replicas behind HAProxy, Redis with Sentinel.
SCALE_FILE = ROOT / "docker-compose.scale.yml"
SMOKE_LABEL = "pinhole.smoke"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|s|m|h)")


def duration_s(text: str | int | float | None, default: float) -> float:
    """Compose durations: ``1s``, ``500ms``, ``1m30s``."""
    if text is None:
        return default
    if isinstance(text, int | float):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise LabError(f"cannot read the duration {text!r}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


@dataclass
class Service:
    name: str
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    networks: dict[str, str] = field(default_factory=dict)  # network -> ipv4 address
    depends_on: dict[str, str] = field(default_factory=dict)  # service -> condition
    healthcheck: list[str] | None = None  # argv
    interval_s: float = 30.0
    timeout_s: float = 30.0
    retries: int = 3
    start_period_s: float = 0.0
    sysctls: dict[str, str] = field(default_factory=dict)
    volumes: list[tuple[str, str]] = field(default_factory=list)  # (volume, target)
    smoke: bool = False


@dataclass
class Project:
    services: dict[str, Service]
    networks: dict[str, ipaddress.IPv4Network]
    internal: set[str]


def _compose_binary() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        return ["docker", "compose"]
    raise LabError("neither docker-compose nor docker compose is installed: one of them reads "
                   "and validates the file (Debian: apt install docker-compose)")


def _healthcheck(spec: Mapping[str, Any] | None) -> list[str] | None:
    if not spec or spec.get("disable"):
        return None
    test = spec.get("test")
    if isinstance(test, str):
        return ["sh", "-c", test]
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL":
        return ["sh", "-c", " ".join(test[1:])]
    return list(test[1:]) if test[0] == "CMD" else list(test)


def _volumes(entries: list[Any]) -> list[tuple[str, str]]:
    out = []
    for entry in entries or []:
        if isinstance(entry, str):
            source, _, rest = entry.partition(":")
            out.append((source, rest.split(":")[0]))
        else:
            out.append((str(entry["source"]), str(entry["target"])))
    return out


def _unescape(argv: list[str]) -> list[str]:
    """``docker-compose config`` writes a literal ``$`` as ``$$``; a service sees ``$``."""
    return [a.replace("$$", "$") for a in argv]


def parse(config: Mapping[str, Any]) -> Project:
    """A :class:`Project` from ``docker-compose config``'s normalised document."""
    networks: dict[str, ipaddress.IPv4Network] = {}
    internal = set()
    for name, spec in (config.get("networks") or {}).items():
        spec = spec or {}
        subnets = [c["subnet"] for c in (spec.get("ipam") or {}).get("config", []) if "subnet" in c]
        if not subnets:
            raise LabError(f"network {name} needs an ipam subnet for the emulation")
        networks[name] = ipaddress.IPv4Network(subnets[0])
        if spec.get("internal"):
            internal.add(name)
    services = {}
    for name, spec in config["services"].items():
        command = spec.get("command") or []
        if isinstance(command, str):
            command = shlex.split(command)
        env = spec.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env if "=" in e)
        nets = spec.get("networks") or {}
        if isinstance(nets, list):
            nets = {n: None for n in nets}
        addresses = {}
        for net, opts in nets.items():
            if not (opts or {}).get("ipv4_address"):
                raise LabError(f"service {name} needs an ipv4_address on network {net}")
            addresses[net] = str(opts["ipv4_address"])
        deps = spec.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        check = spec.get("healthcheck") or {}
        labels = spec.get("labels") or {}
        if isinstance(labels, list):
            labels = dict(item.split("=", 1) for item in labels)
        services[name] = Service(
            name=name, command=_unescape([str(c) for c in command]),
            environment={k: str(v) for k, v in env.items() if v is not None},
            networks=addresses,
            depends_on={d: (c or {}).get("condition", "service_started") for d, c in deps.items()},
            healthcheck=(lambda h: h and _unescape(h))(_healthcheck(check)),
            interval_s=duration_s(check.get("interval"), 30.0),
            timeout_s=duration_s(check.get("timeout"), 30.0),
            retries=int(check.get("retries", 3)),
            start_period_s=duration_s(check.get("start_period"), 0.0),
            sysctls={k: str(v) for k, v in (spec.get("sysctls") or {}).items()},
            volumes=_volumes(spec.get("volumes") or []),
            smoke=str(labels.get(SMOKE_LABEL, "")).lower() == "true",
        )
    return Project(services, networks, internal)


def files_for(profile: str) -> list[Path]:
    """The files ``docker compose -f … up`` takes for ``profile``: the hybrid profiles add the
    hybrid node's service (README: ``-f docker-compose.yml -f docker-compose.hybrid.yml``)."""
    return [COMPOSE_FILE, HYBRID_FILE] if profile in HYBRID_PROFILES else [COMPOSE_FILE]


def load(paths: Sequence[Path], env: Mapping[str, str]) -> Project:
    """Read ``paths`` (``-f`` each, later ones overriding) as Compose reads them, with ``env``
    for their ``${VARS}``."""
    if not paths:
        raise LabError("no compose file to read")
    done = subprocess.run([*_compose_binary(), *(a for p in paths for a in ("-f", str(p))),
                           "config"], capture_output=True, text=True,
                          env={**os.environ, **env}, check=False, cwd=paths[0].parent)
    if done.returncode != 0:
        raise LabError(f"compose rejected {' + '.join(map(str, paths))}: "
                       f"{done.stderr.strip()}")
    return parse(yaml.safe_load(done.stdout))


@dataclass
class State:
    proc: subprocess.Popen[bytes] | None = None
    healthy: bool = False
    checks: int = 0
    next_check: float = 0.0
    started_at: float = 0.0


class ComposeRun:
    """One emulated ``docker compose up``; :meth:`down` undoes all of it."""

    def __init__(self, project: Project, state_dir: Path, run_id: str | None = None,
                 progress: Callable[[str], None] = lambda _: None) -> None:
        self.project, self.state_dir, self.progress = project, state_dir, progress
        self.run_id = run_id or "pc" + secrets.token_hex(3)
        self.states = {name: State() for name in project.services}
        self.mountpoints: list[Path] = []
        self.bin_dir = str(Path(sys.executable).parent)

    def ns(self, service: str) -> str:
        return f"{self.run_id}-{service}"

    def net_ns(self, network: str) -> str:
        return f"{self.run_id}-net-{network}"

    @property
    def namespaces(self) -> list[str]:
        return ([self.net_ns(n) for n in self.project.networks]
                + [self.ns(s) for s in self.project.services])

    # ------------------------------------------------------------------ set-up
    def create(self) -> None:
        """Namespaces, bridges, veths, addresses, hosts files, volumes."""
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        for network in self.project.networks:
            ns = self.net_ns(network)
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "add", "br0", "type", "bridge")
            run("ip", "-n", ns, "link", "set", "br0", "up")
        for index, service in enumerate(self.project.services.values()):
            ns = self.ns(service.name)
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
            for k, (network, address) in enumerate(service.networks.items()):
                if network not in self.project.networks:
                    raise LabError(f"service {service.name} uses undeclared network {network}")
                inside, outside = f"{self.run_id}s{index}n{k}", f"{self.run_id}p{index}n{k}"
                run("ip", "link", "add", inside, "netns", ns, "type", "veth", "peer", "name",
                    outside, "netns", self.net_ns(network))
                run("ip", "-n", ns, "link", "set", inside, "name", f"eth{k}")
                plen = self.project.networks[network].prefixlen
                run("ip", "-n", ns, "addr", "add", f"{address}/{plen}", "dev", f"eth{k}")
                run("ip", "-n", ns, "link", "set", f"eth{k}", "up")
                run("ip", "-n", self.net_ns(network), "link", "set", outside, "master", "br0",
                    "up")
            self._hosts(service)
            for key, value in service.sysctls.items():
                run("ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}")
            for volume, target in service.volumes:
                (self.state_dir / "volumes" / volume).mkdir(parents=True, exist_ok=True)
                mountpoint = Path(target)
                if not mountpoint.exists():
                    mountpoint.mkdir(parents=True)
                    self.mountpoints.append(mountpoint)

    def _hosts(self, service: Service) -> None:
        """Compose's DNS: the services sharing a network with ``service``, by name."""
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost"]
        for other in self.project.services.values():
            shared = [n for n in other.networks if n in service.networks]
            if shared:
                lines.append(f"{other.networks[shared[0]]}\t{other.name}")
        directory = Path("/etc/netns") / self.ns(service.name)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "hosts").write_text("\n".join(lines) + "\n")

    def argv(self, service: Service, command: list[str]) -> list[str]:
        """``command`` inside the service: its namespace, environment and volumes."""
        env = {"PATH": f"{self.bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                       "/sbin:/bin", "HOME": "/root", "PYTHONUNBUFFERED": "1",
               **service.environment}
        # the mountpoint is made again here: another run that made it may have removed it
        mounts = " && ".join(
            f"mkdir -p {shlex.quote(t)} && "
            f"mount --bind {shlex.quote(str(self.state_dir / 'volumes' / v))} {shlex.quote(t)}"
            for v, t in service.volumes) or "true"
        return ["ip", "netns", "exec", self.ns(service.name), "env", "-i",
                *(f"{k}={v}" for k, v in env.items()),
                "sh", "-c", f'{mounts} && exec "$@"', "sh", *command]

    # ------------------------------------------------------------------ running
    def start(self, service: Service) -> None:
        logs = self.state_dir / "logs"
        self.progress(f"starting {service.name} in {self.ns(service.name)}"
                      + (f" ({', '.join(service.networks.values())})" if service.networks else ""))
        with (logs / f"{service.name}.out").open("wb") as out, \
                (logs / f"{service.name}.log").open("wb") as err:
            self.states[service.name].proc = subprocess.Popen(
                self.argv(service, service.command), stdout=out, stderr=err,
                stdin=subprocess.DEVNULL, cwd=ROOT, start_new_session=True)
        self.states[service.name].started_at = time.monotonic()

    def _satisfied(self, dep: str, condition: str) -> bool:
        state = self.states[dep]
        if state.proc is None:
            return False
        code = state.proc.poll()
        if condition == "service_completed_successfully":
            if code not in (None, 0):
                raise LabError(f"{dep} exited with code {code}; see {self._log(dep)}")
            return code == 0
        if code is not None and condition == "service_healthy":
            raise LabError(f"{dep} exited with code {code} before it was healthy; "
                           f"see {self._log(dep)}")
        return condition == "service_started" or state.healthy

    def _log(self, service: str) -> Path:
        return self.state_dir / "logs" / f"{service}.log"

    def _check_health(self, service: Service) -> None:
        state = self.states[service.name]
        now = time.monotonic()
        if (service.healthcheck is None or state.healthy or state.proc is None
                or state.proc.poll() is not None or now < state.next_check):
            return
        try:
            ok = subprocess.run(self.argv(service, service.healthcheck), capture_output=True,
                                timeout=service.timeout_s, cwd=ROOT, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        state.next_check = time.monotonic() + service.interval_s
        if ok:
            state.healthy = True
            self.progress(f"{service.name} is healthy")
            return
        if now - state.started_at >= service.start_period_s:
            state.checks += 1
        if state.checks > service.retries:
            raise LabError(f"{service.name} stayed unhealthy after {service.retries} checks; "
                           f"see {self._log(service.name)}")

    def up(self, timeout_s: float = 180.0) -> None:
        """Start every service in dependency order; return when the smoke services exit."""
        pending = dict(self.project.services)
        deadline = time.monotonic() + timeout_s
        smoke = [s for s in self.project.services.values() if s.smoke]
        while True:
            for name, service in list(pending.items()):
                for dep in service.depends_on:
                    if dep not in self.project.services:
                        raise LabError(f"{name} depends on unknown service {dep}")
                if all(self._satisfied(d, c) for d, c in service.depends_on.items()):
                    del pending[name]
                    self.start(service)
            for service in self.project.services.values():
                self._check_health(service)
            done = [s for s in smoke if (p := self.states[s.name].proc) and p.poll() is not None]
            if not pending and len(done) == len(smoke):
                return
            if time.monotonic() > deadline:
                waiting = sorted(pending) or sorted(s.name for s in smoke if s not in done)
                raise LabError(f"still waiting for {', '.join(waiting)} after {timeout_s:.0f} s; "
                               f"see {self.state_dir / 'logs'}")
            time.sleep(0.1)

    @property
    def smoke_services(self) -> list[str]:
        return [s.name for s in self.project.services.values() if s.smoke]

    def host_path(self, service: Service, path: str) -> Path | None:
        """Where ``path`` inside ``service`` is on this host: under one of its volumes."""
        for volume, target in service.volumes:
            inside = Path(path)
            if inside == Path(target) or inside.is_relative_to(target):
                return self.state_dir / "volumes" / volume / inside.relative_to(target)
        return None

    def smoke_results(self) -> dict[str, dict[str, Any]]:
        """The clients' results, read where the smoke services' ``--results`` points."""
        found: dict[str, dict[str, Any]] = {}
        for name in self.smoke_services:
            service = self.project.services[name]
            if "--results" not in service.command[:-1]:
                raise LabError(f"smoke service {name} names no --results directory")
            inside = service.command[service.command.index("--results") + 1]
            directory = self.host_path(service, inside)
            if directory is None:
                raise LabError(f"{name}'s --results {inside} is on none of its volumes")
            found.update(smoke.read_results(directory))
        return found

    def result(self, name: str) -> dict[str, Any]:
        """A finished service's exit code, what it printed, and its error output if it failed."""
        proc = self.states[name].proc
        code = None if proc is None else proc.poll()
        out: dict[str, Any] = {"exit_code": code,
                               "output": (self.state_dir / "logs" / f"{name}.out").read_text()}
        if code:
            out["error"] = self._log(name).read_text()[-500:].strip()
        return out

    # ------------------------------------------------------------------ teardown
    def down(self) -> None:
        """Stop everything inside (SIGTERM, then SIGKILL), delete what the run created."""
        for state in self.states.values():
            if state.proc is not None and state.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(state.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for state in self.states.values():
            if state.proc is not None:
                try:
                    state.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(state.proc.pid, signal.SIGKILL)
                    state.proc.wait()
        remove_namespaces(self.namespaces)  # and what escaped its process group (daemons)
        for ns in self.namespaces:
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        # A volume's mountpoint is a host path (/var/lib/pinhole) every run shares, and
        # Linux lets rmdir detach a mount that another run's namespace holds there: it goes
        # only when no other compose run is up (that run makes it again if it needs it).
        if not other_runs(self.run_id):
            for mountpoint in self.mountpoints:
                with contextlib.suppress(OSError):
                    mountpoint.rmdir()


def other_runs(run_id: str) -> set[str]:
    """The ids of the other compose runs whose namespaces exist now."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=False).stdout
    ids = {m.group(1) for m in re.finditer(r"^(pc[0-9a-f]{6})-", listed, re.MULTILINE)}
    return ids - {run_id}


def leftovers(run_id: str) -> list[str]:
    """What a finished run left: namespaces, /etc/netns entries, processes inside."""
    found = netns_leftovers([run_id + "-"])
    etc = Path("/etc/netns")
    if etc.exists():
        found += [str(p) for p in etc.iterdir() if p.name.startswith(run_id + "-")]
    return found
