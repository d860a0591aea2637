"""The client's caches and the exit codes, without sockets.

- Two running processes that share a cache directory hold different identity slots
  (before, both re-registered one cached device id and revoked each other's token).
- A cache file that does not validate is set aside as ``*.corrupt`` with one warning.
- Each kind of failure maps to its documented exit code (edge.boundary).
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest

from client.api import PinError
from client.cache import IdentitySlot, ReportCache
from client.failures import Context, translate
from client.media import MediaError
from edge.boundary import ExitCode, Failure, describe
from wire.models import ReachabilityReport


def test_running_processes_hold_different_identity_slots(tmp_path: Path) -> None:
    first = IdentitySlot.claim(tmp_path, "k")
    second = IdentitySlot.claim(tmp_path, "k")
    assert first.path is not None and second.path is not None and first.path != second.path
    first.save("dev-aaaaaaaaaaaa", None)
    first.release()
    again = IdentitySlot.claim(tmp_path, "k")  # the usual slot is free again, with its id
    assert again.path == first.path and again.device_id == "dev-aaaaaaaaaaaa"
    second.release()
    again.release()


def test_with_every_slot_taken_the_identity_is_not_kept(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    held = [IdentitySlot.claim(tmp_path, "k", slots=2) for _ in range(2)]
    extra = IdentitySlot.claim(tmp_path, "k", slots=2)
    assert extra.path is None and extra.device_id is None
    extra.save("dev-bbbbbbbbbbbb", None)  # nowhere: no file written
    assert len(list(tmp_path.glob("device-*.json"))) == 0
    assert "not kept" in caplog.text
    for slot in held:
        slot.release()


@pytest.mark.parametrize("junk", ["[1, 2]", "null", '{"device_id": "a b"}', "\xff"])
def test_a_corrupt_identity_is_set_aside(tmp_path: Path, junk: str,
                                         caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "device-k.json").write_text(junk)
    with caplog.at_level(logging.WARNING):
        slot = IdentitySlot.claim(tmp_path, "k")
    assert slot.device_id is None
    assert (tmp_path / "device-k.json.corrupt").read_text() == junk
    assert len(caplog.records) == 1 and "set aside" in caplog.text
    slot.release()


def test_a_corrupt_report_is_set_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = ReportCache(tmp_path, clock=lambda: 1000.0)
    cache.store("dev-1", "net", ReachabilityReport(results=[]), ttl_s=60)
    (path,) = tmp_path.glob("report-*.json")
    path.write_text('{"device_id": "dev-1", "network": "net"}')
    assert cache.load("dev-1", "net") is None
    assert path.with_name(path.name + ".corrupt").exists() and not path.exists()
    assert "set aside" in caplog.text
    cache.store("dev-1", "net", ReachabilityReport(results=[]), ttl_s=60)  # rebuilt
    assert cache.load("dev-1", "net") is not None


def test_exit_codes() -> None:
    ctx = Context(cloud="https://c:443")
    media = translate(MediaError("no transport of the plan reached node n"), ctx)
    pin = translate(PinError("pin mismatch"), ctx)
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 5, 6]  # as documented (README)
    assert media is not None and media.exit_code == ExitCode.NO_MEDIA
    assert pin is not None and pin.exit_code == ExitCode.TRUST
    assert describe(ssl.SSLCertVerificationError("x")).exit_code == ExitCode.TRUST
    assert describe(ConnectionRefusedError(111, "refused")).exit_code == ExitCode.NO_CLOUD
    assert describe(KeyError("x")).exit_code == ExitCode.OTHER
    assert Failure(ExitCode.USAGE, "usage", "a\nb", "c\nd").line("p") == "p: a b; c d"
