"""A private Docker engine for the compose tests, and the images they run.

The engine is Debian's ``dockerd`` started as root with its own data root, exec root, socket
and pid file, ``--iptables=false --ip-forward=false --ip-masq=false --bridge=none``: it
changes neither the host's firewall nor its forwarding, and it has no default bridge (builds
use ``--network host``; the stack uses the compose file's own networks). :meth:`Engine.stop`
removes every container, network and volume, stops the daemon and checks that no mount under
its roots is left.

Image registries cannot be assumed reachable, Debian's archive can: the base image is
``debootstrap --variant=minbase bookworm`` with Python 3.11 (the stand-in for
``python:3.11-slim-bookworm``), imported once and cached outside the repository, keyed by
what went into it. The data root is kept in the same cache, so a re-run reuses the base image
and the build cache. Python packages come from a wheelhouse downloaded on the host with the
repository's ``constraints.txt`` (inside a container the package index may not be trusted).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
VARIANT = "minbase"
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (``PINHOLE_DEBIAN_MIRROR`` overrides it):
    the base image comes from the same place as the machine's own packages."""
    if os.environ.get("PINHOLE_DEBIAN_MIRROR"):
        return os.environ["PINHOLE_DEBIAN_MIRROR"]
    for sources in APT_SOURCES:
        try:
            text = sources.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and len(words) > 1:  # deb822 (debian.sources)
                return words[1]
            if words[:1] == ["deb"]:  # one-line format
                url = next((w for w in words[1:] if "://" in w), None)
                if url:
                    return url
    raise EngineError("no Debian mirror found in the apt sources; set PINHOLE_DEBIAN_MIRROR "
                      "to a Debian archive URL")


#: python3 3.11 and ensurepip, as in python:3.11-slim-bookworm; coturn, the turn service's
#: turnserver (the Dockerfile's apt-get then finds it installed)
INCLUDE = ("python3-venv", "coturn")
WHEELHOUSE = ROOT / "docker" / "wheelhouse"


class EngineError(Exception):
    """The engine or an image could not be made; the message says which step and why."""


def cache_dir() -> Path:
    """``PINHOLE_DOCKER_CACHE``, else ``~/.cache/pinhole-docker`` (outside the repository)."""
    configured = os.environ.get("PINHOLE_DOCKER_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "pinhole-docker"


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def base_key() -> str:
    """What the base image is made of: a change to any part makes a new one."""
    return _key(SUITE, VARIANT, debian_mirror(), ",".join(INCLUDE), platform.machine())


def _run(argv: Sequence[str], what: str, env: Mapping[str, str] | None = None,
         timeout: float = 900, stdin: IO[bytes] | None = None) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=stdin is None,
                              env=None if env is None else {**os.environ, **env},
                              timeout=timeout, check=False, stdin=stdin)
    except subprocess.TimeoutExpired:
        raise EngineError(f"{what}: no answer after {timeout:.0f} s") from None
    out = done.stdout if isinstance(done.stdout, str) else done.stdout.decode(errors="replace")
    err = done.stderr if isinstance(done.stderr, str) else done.stderr.decode(errors="replace")
    if done.returncode != 0:
        raise EngineError(f"{what} failed ({done.returncode}): {out[-3000:]}\n{err[-2000:]}")
    return out


def base_tarball(cache: Path, say: Callable[[str], None]) -> Path:
    """The debootstrap root file system as a tar, made once per :func:`base_key`."""
    tarball = cache / f"base-{SUITE}-{base_key()}.tar"
    if tarball.exists():
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    work = cache / f"rootfs-{secrets.token_hex(4)}"
    say(f"debootstrap --variant={VARIANT} {SUITE} (once; cached as {tarball.name})")
    try:
        _run(["debootstrap", f"--variant={VARIANT}", f"--include={','.join(INCLUDE)}",
              SUITE, str(work), debian_mirror()], "debootstrap", timeout=1500)
        partial = tarball.with_suffix(".part")
        _run(["tar", "-C", str(work), "--numeric-owner", "-cf", str(partial), "."], "tar")
        partial.rename(tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tarball


def runtime_requirements() -> list[str]:
    """pyproject's runtime dependencies (what the image installs)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [str(d) for d in project["dependencies"]]


def wheelhouse(cache: Path, say: Callable[[str], None]) -> Path:
    """The image's wheels, downloaded on the host with ``constraints.txt``, copied into the
    build context's ``docker/wheelhouse`` (ignored by git)."""
    constraints = ROOT / "constraints.txt"
    # Debian's Python is 3.11.2: redis needs async-timeout below 3.11.3, the host's may not.
    requirements = [*runtime_requirements(), "setuptools>=68", "wheel", "async-timeout"]
    key = _key(constraints.read_text(), *requirements, sys.version, platform.machine())
    wheels = cache / f"wheels-{key}"
    if not wheels.exists():
        say(f"pip download the image's wheels (once; cached as {wheels.name})")
        partial = cache / f"wheels-{key}.part"
        shutil.rmtree(partial, ignore_errors=True)
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
              "-d", str(partial), "-c", str(constraints), *requirements], "pip download")
        partial.rename(wheels)
        for old in cache.glob("wheels-*"):
            if old != wheels:
                shutil.rmtree(old, ignore_errors=True)
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    for stale in WHEELHOUSE.glob("*.whl"):
        if not (wheels / stale.name).exists():
            stale.unlink()
    for wheel in wheels.glob("*.whl"):
        if not (WHEELHOUSE / wheel.name).exists():
            shutil.copy2(wheel, WHEELHOUSE / wheel.name)
    return WHEELHOUSE


def _mounts_under(*roots: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if any(target == str(r) or target.startswith(str(r) + "/") for r in roots):
            found.append(target)
    return found


class Engine:
    """A private ``dockerd``; the ``docker`` and ``docker-compose`` it answers."""

    def __init__(self, cache: Path, say: Callable[[str], None] = lambda _: None) -> None:
        self.cache, self.say = cache, say
        self.data_root = cache / "data-root"
        # The exec root holds containerd's sockets: keep its path short (sun_path limit).
        self.exec_root = Path("/run") / f"pinhole-dockerd-{secrets.token_hex(3)}"
        self.socket = self.exec_root / "docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": f"unix://{self.socket}", "COMPOSE_DOCKER_CLI_BUILD": "0",
                "DOCKER_BUILDKIT": "0"}

    def docker(self, *args: str, timeout: float = 900, what: str = "") -> str:
        return _run(["docker", *args], what or f"docker {' '.join(args[:2])}", self.env,
                    timeout)

    def start(self) -> None:
        self.cache.mkdir(parents=True, exist_ok=True)
        self._lock = (self.cache / "lock").open("w")  # one engine on this data root at a time
        self.say("waiting for the cache lock" if not _try_lock(self._lock) else "")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.exec_root.mkdir(parents=True)
        log = (self.exec_root / "dockerd.log").open("wb")
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
             "-H", f"unix://{self.socket}", "--pidfile", str(self.exec_root / "dockerd.pid"),
             "--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
             "--storage-driver=overlay2"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(EngineError):
                self.docker("version", "--format", "{{.Server.Version}}", timeout=10)
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.exec_root / "dockerd.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise EngineError(f"dockerd did not start: {tail}")
            time.sleep(0.3)
        try:
            self._clear()
        except EngineError:
            self.stop()
            raise

    def _clear(self) -> None:
        """Remove every container, network and named volume: the data root is this engine's
        alone (locked), and what is in it was left by a run killed before its teardown
        (defect pinned down: a killed run's ``pinhole-again`` volume kept its PKI, and the
        next run's first ``up`` read "pki: kept" where it had to create one)."""
        ids = self.docker("ps", "-aq", timeout=30).split()
        if ids:
            self.docker("rm", "-f", "-v", *ids, timeout=120)
        self.docker("network", "prune", "-f", timeout=60)
        # named volumes by name: `volume prune` spares them on a daemon with API >= 1.42, and
        # its --all is refused by an older one (Debian's dockerd 20.10)
        volumes = self.docker("volume", "ls", "-q", timeout=30).split()
        if volumes:
            self.docker("volume", "rm", "-f", *volumes, timeout=60)

    def stop(self) -> list[str]:
        """Remove every container, network and volume; stop dockerd. Returns what is left
        (mounts under the engine's roots, a daemon still running): empty when clean."""
        left: list[str] = []
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(EngineError):
                self._clear()
                self.docker("image", "prune", "-f", timeout=120)  # the cache stays bounded
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                left.append("dockerd needed SIGKILL")
        # dockerd leaves the bind mount of its own network namespace (netns/default) behind
        # by design; anything else still mounted was left by a container.
        own = str(self.exec_root / "netns" / "default")
        for mount in reversed(_mounts_under(self.exec_root, self.data_root)):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
            if mount != own:
                left.append(f"mount {mount}")
        left += [f"mount {m} (umount failed)" for m in _mounts_under(self.exec_root,
                                                                    self.data_root)]
        shutil.rmtree(self.exec_root, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        return left

    # ------------------------------------------------------------------ images
    def base_image(self) -> str:
        """``pinhole-base:<key>``: imported from the cached tarball unless present."""
        tag = f"pinhole-base:{SUITE}-{base_key()}"
        with contextlib.suppress(EngineError):
            self.docker("image", "inspect", tag, timeout=30)
            return tag
        tarball = base_tarball(self.cache, self.say)
        self.say(f"docker import {tarball.name} {tag}")
        with tarball.open("rb") as stream:
            _run(["docker", "import", "-", tag], "docker import", self.env, stdin=stream)
        return tag

    def build(self, tag: str, dockerfile: Path, context: Path, base: str) -> float:
        """``docker build`` with ``BASE=base`` on the host network; seconds it took."""
        start = time.monotonic()
        self.docker("build", "--network", "host", "--build-arg", f"BASE={base}", "-t", tag,
                    "-f", str(dockerfile), str(context), timeout=1500, what=f"build {tag}")
        return time.monotonic() - start

    def inspect(self, container: str) -> dict[str, object]:
        found: list[dict[str, object]] = json.loads(self.docker("inspect", container))
        return found[0]


def _try_lock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def running_engine(say: Callable[[str], None] = lambda _: None) -> Iterator[Engine]:
    engine = Engine(cache_dir(), say)
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()
