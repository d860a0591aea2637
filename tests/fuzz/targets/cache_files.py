"""The ``cache_files`` fuzz target (client.cache, edge.files)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from client.cache import NodeListCache
from client.cache import _read_model as read_model
from edge.files import IdentityFile, ReportFile


@functools.cache
def _files() -> Path:
    """cache_files' scratch folder: made on first use (not at import: every process that
    imports the targets left one behind) and removed at exit. libFuzzer ends a run without
    Python's exit handlers, so ``python -m tests.fuzz`` also runs each target with its own
    TMPDIR, which it removes."""
    path = Path(tempfile.mkdtemp(prefix="pinhole-fuzz-files-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def cache_files(data: bytes) -> None:
    """The client's caches (identity, probe report, node list) as read from disk: any bytes
    give the model or None, never an exception; a corrupt identity or report file is set
    aside (renamed ``*.corrupt``) so that it is rebuilt."""
    identity, report = _files() / "identity.json", _files() / "report.json"
    identity.write_bytes(data)
    report.write_bytes(data)
    for path, loaded in ((identity, read_model(identity, IdentityFile)),
                         (report, read_model(report, ReportFile))):
        assert loaded is not None or not path.exists(), "a corrupt cache file stayed in place"
    nodes = NodeListCache(_files(), clock=lambda: 0.0)
    nodes._path("https://c", "o").write_bytes(data)
    nodes.load("https://c", "o")
