"""The cloud's SPKI pins on this device: from the enrollment material, re-pinned only by hand.

docs/design.md "Cloud API": "The cloud's TLS key is pinned (SPKI, primary + backup)
from the enrollment material (e.g. ``stack.json``), never learned from a first
connection." The pins in effect come, first found:

1. ``--pin`` (repeatable) or ``PINHOLE_PIN`` (comma-separated);
2. a re-pin this device's owner made with ``pinhole pin --from-stack FILE``
   (kept in ``pins.json`` in the cache directory, per cloud URL) after a real
   key rotation; every re-pin is appended to ``pins.log`` and printed;
3. the ``pins`` of the enrollment material (``stack.json``).

Nothing here ever writes a key the cloud *presented*: a TLS-inspecting box
on the first contact is refused, not pinned (RFC 7469 §2.6 treats a pin
mismatch as a failed connection, and the pins are known before it).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.errors import PinsError as PinsError

PIN = re.compile(r"^sha256/[A-Za-z0-9+/]{43}=$")  # RFC 7469 §2.4: base64 of a SHA-256


def checked(pins: Sequence[str], where: str) -> tuple[str, ...]:
    for pin in pins:
        if not PIN.match(pin):
            raise PinsError(f"{where}: {pin!r} is not an SPKI pin (sha256/<base64>, RFC 7469 "
                            "§2.4); copy the pins from the enrollment material")
    return tuple(pins)


@dataclass(frozen=True, slots=True)
class Pins:
    pins: tuple[str, ...]
    source: str  # "--pin", "re-pinned from <file> at <time>", "stack.json", or "none"


class PinStore:
    """``pins.json`` and ``pins.log`` in the device's cache directory."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "pins.json"
        self.log = directory / "pins.log"

    def _all(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, cloud: str) -> Pins | None:
        entry = self._all().get(cloud)
        if not isinstance(entry, dict) or not isinstance(entry.get("pins"), list):
            return None
        pins = checked([str(p) for p in list(entry["pins"])], str(self.path))
        return Pins(pins, f"re-pinned from {entry.get('from')} at {entry.get('at')}")

    def repin(self, cloud: str, pins: Sequence[str], source: str) -> str:
        """Pin ``cloud`` to ``pins`` by hand; the line logged (and to print)."""
        data = self._all()
        before = data.get(cloud)
        old = [str(p) for p in list(before["pins"])] if isinstance(before, dict) \
            and isinstance(before.get("pins"), list) else []
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        data[cloud] = {"pins": list(pins), "from": source, "at": at}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(data, indent=2))
        line = (f"{at} re-pinned {cloud}: {', '.join(old) if old else 'the enrollment pins'}"
                f" -> {', '.join(pins)} (from {source})")
        with self.log.open("a") as out:
            out.write(line + "\n")
        return line

    def reset(self, cloud: str) -> str | None:
        data = self._all()
        if data.pop(cloud, None) is None:
            return None
        self.path.write_text(json.dumps(data, indent=2))
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = f"{at} re-pin of {cloud} removed: the enrollment material's pins apply again"
        with contextlib.suppress(OSError), self.log.open("a") as out:
            out.write(line + "\n")
        return line


def in_effect(cloud: str, explicit: Sequence[str], store: PinStore | None,
              enrollment: Sequence[str]) -> Pins:
    """The pins this run enforces, and where they come from."""
    if explicit:
        return Pins(checked(explicit, "--pin"), "--pin")
    stored = store.get(cloud) if store is not None else None
    if stored is not None:
        return stored
    if enrollment:
        return Pins(checked(enrollment, "stack.json"), "the enrollment material (stack.json)")
    return Pins((), "none")
