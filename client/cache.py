"""The device's probe report cached on disk, per device and network identity.

Seed: "The probing data cache expiry is set to 2 hours." A report is reused
while it is younger than the probe TTL *and* the device is on the same
network: the same local address towards the cloud. A changed network, an
expired entry, a ``probe.requested`` event or the periodic interval means a
new probe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wire.models import NodeInfo, ReachabilityReport


def default_directory() -> Path:
    """``PINHOLE_CACHE_DIR``, else ``$XDG_CACHE_HOME/pinhole``, else ``~/.cache/pinhole``."""
    if os.environ.get("PINHOLE_CACHE_DIR"):
        return Path(os.environ["PINHOLE_CACHE_DIR"])
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
        try:
            data = json.loads(path.read_text())
            cached = CachedReport(data["device_id"], data["network"], float(data["stored_at"]),
                                  float(data["expires_at"]),
                                  ReachabilityReport.model_validate(data["report"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing or unreadable: probe again
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
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(device_id, network)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({
            "device_id": device_id, "network": network, "stored_at": now,
            "expires_at": cached.expires_at, "report": report.model_dump(mode="json")}))
        tmp.replace(path)
        return cached

    def forget(self, device_id: str, network: str) -> None:
        with contextlib.suppress(OSError):
            self._path(device_id, network).unlink()


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
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(cloud, org)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"stored_at": self.clock(),
                                   "nodes": [n.model_dump(mode="json") for n in nodes]}))
        tmp.replace(path)

    def load(self, cloud: str, org: str) -> tuple[list[NodeInfo], float] | None:
        """The cached nodes and their age in seconds, or None when there is none (or it is
        unreadable)."""
        try:
            data = json.loads(self._path(cloud, org).read_text())
            nodes = [NodeInfo.model_validate(n) for n in data["nodes"]]
            return nodes, max(0.0, self.clock() - float(data["stored_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
