"""The device's probe report cached on disk, per device and network identity.

Seed: "The probing data cache expiry is set to 2 hours." A report is reused
while it is younger than the probe TTL *and* the device is on the same
network: the same local address towards the cloud. A changed network, an
expired entry, a ``probe.requested`` event or the periodic interval means a
new probe.

The device identity (its id and the cloud's pin) is kept here too, in one of a
few *slots*: each running ``pinhole`` holds its slot's lock for its lifetime,
so two processes sharing the directory are two devices and never revoke each
other's token by registering again. A cache file that does not validate is set
aside (``*.corrupt``) with one warning and rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.files import IdentityFile, ReportFile, first_problem
from wire.models import NodeInfo, ReachabilityReport

log = logging.getLogger(__name__)
M = TypeVar("M", IdentityFile, ReportFile)
MAX_SLOTS = 8  # identities one cache directory holds for processes running at once


def set_aside(path: Path, why: str) -> None:
    """Rename an unreadable cache file to ``<name>.corrupt`` (one warning), to be rebuilt."""
    aside = path.with_name(path.name + ".corrupt")
    with contextlib.suppress(OSError):
        path.replace(aside)
    log.warning("the cache file %s is not valid (%s); set aside as %s and rebuilt",
                path, why, aside.name)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _read_model(path: Path, model: type[M]) -> M | None:
    """The file as ``model``; None when missing; a corrupt file is set aside."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read the cache file %s (%s); going on without it", path,
                    exc.strerror)
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        set_aside(path, first_problem(exc))
        return None


class IdentitySlot:
    """This process's device identity in a cache directory, locked while it runs."""

    def __init__(self, path: Path | None, lock: IO[bytes] | None) -> None:
        self.path = path
        self._lock = lock
        saved = _read_model(path, IdentityFile) if path is not None else None
        self.device_id = saved.device_id if saved else None
        self.pin = saved.pin if saved else None

    @classmethod
    def claim(cls, directory: Path, key: str, slots: int = MAX_SLOTS) -> IdentitySlot:
        """The first slot for ``key`` no other running process holds (slot 0 is the
        usual one); with every slot taken, an identity that is not kept."""
        directory.mkdir(parents=True, exist_ok=True)
        for n in range(slots):
            stem = f"device-{key}" + (f".{n}" if n else "")
            lock = (directory / f"{stem}.lock").open("ab")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.close()
                continue
            return cls(directory / f"{stem}.json", lock)
        log.warning("%d processes already use the cache directory %s; this one registers "
                    "a device that is not kept", slots, directory)
        return cls(None, None)

    def save(self, device_id: str, pin: str | None) -> None:
        self.device_id, self.pin = device_id, pin
        if self.path is not None:
            body = IdentityFile(device_id=device_id, pin=pin)
            _write_atomically(self.path, body.model_dump_json(exclude_none=True))

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the descriptor drops the lock
            self._lock = None


def default_directory() -> Path:
    """``$XDG_CACHE_HOME/pinhole``, else ``~/.cache/pinhole`` (``--cache-dir`` or
    ``PINHOLE_CACHE_DIR`` choose another, through the CLI's settings layer)."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "pinhole"


def local_address_towards(host: str, port: int = 443) -> str:
    """The local IP the kernel would use to reach ``host`` (no packet is sent)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, port))
            return str(s.getsockname()[0])
    except OSError:
        return "unknown"


@dataclass(frozen=True, slots=True)
class CachedReport:
    device_id: str
    network: str
    stored_at: float
    expires_at: float
    report: ReachabilityReport


class ReportCache:
    def __init__(self, directory: Path, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.clock = clock

    def _path(self, device_id: str, network: str) -> Path:
        key = hashlib.sha256(f"{device_id}\0{network}".encode()).hexdigest()[:24]
        return self.directory / f"report-{key}.json"

    def load(self, device_id: str, network: str) -> CachedReport | None:
        """The fresh report for this device on this network, or None."""
        path = self._path(device_id, network)
        data = _read_model(path, ReportFile)
        if data is None:
            return None  # missing or set aside: probe again
        cached = CachedReport(data.device_id, data.network, data.stored_at, data.expires_at,
                              data.report)
        if (cached.device_id, cached.network) != (device_id, network) \
                or cached.expires_at <= self.clock():
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return cached

    def store(self, device_id: str, network: str, report: ReachabilityReport,
              ttl_s: float) -> CachedReport:
        now = self.clock()
        cached = CachedReport(device_id, network, now, now + ttl_s, report)
        body = ReportFile(device_id=device_id, network=network, stored_at=now,
                          expires_at=cached.expires_at, report=report)
        _write_atomically(self._path(device_id, network), body.model_dump_json())
        return cached

    def forget(self, device_id: str, network: str) -> None:
        with contextlib.suppress(OSError):
            self._path(device_id, network).unlink()


class NodeListFile(BaseModel):
    """The node list cached at the last registration (pydantic reads it without recursion
    limits to trip on: a corrupt file is a ValidationError, nothing else)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    stored_at: float
    nodes: list[NodeInfo] = Field(max_length=10_000)


class NodeListCache:
    """The node list of the last successful registration with a cloud, per organisation, so
    that ``pinhole netcheck`` can still probe the media nodes when signaling is blocked."""

    def __init__(self, directory: Path, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.clock = clock

    def _path(self, cloud: str, org: str) -> Path:
        key = hashlib.sha256(f"{cloud}\0{org}".encode()).hexdigest()[:24]
        return self.directory / f"nodes-{key}.json"

    def store(self, cloud: str, org: str, nodes: list[NodeInfo]) -> None:
        _write_atomically(self._path(cloud, org), json.dumps(
            {"stored_at": self.clock(), "nodes": [n.model_dump(mode="json") for n in nodes]}))

    def load(self, cloud: str, org: str) -> tuple[list[NodeInfo], float] | None:
        """The cached nodes and their age in seconds, or None when there is none (or it is
        unreadable)."""
        try:
            cached = NodeListFile.model_validate_json(self._path(cloud, org).read_bytes())
        except (OSError, ValidationError):  # json.loads here met deep nesting with a crash
            return None
        return list(cached.nodes), max(0.0, self.clock() - cached.stored_at)
