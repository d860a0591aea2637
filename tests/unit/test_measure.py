"""edge.measure: a Pinhole program measures its coverage from its entry point on, and only
when the suite asks (``PINHOLE_COVERAGE``); coverage.py's own start-up hook is not used for
the services, so their imports are not traced."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType, SimpleNamespace

from edge import measure

PROGRAM = textwrap.dedent("""
    import os, sys
    from edge import measure
    started = measure.start_if_asked(os.environ)
    from edge.boundary import usage      # imported (and run) after the start
    usage("--x", "try --y")
    print(started, "coverage" in sys.modules, os.environ.get("COVERAGE_PROCESS_START"))
""")


def _run(env: dict[str, str], tmp: Path) -> str:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("COVERAGE_") and k != measure.VARIABLE}
    done = subprocess.run([sys.executable, "-c", PROGRAM], cwd=tmp, env={**base, **env},
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def _config(tmp: Path) -> Path:
    rc = tmp / "coveragerc"
    rc.write_text(f"[run]\nbranch = true\nparallel = true\nsource = edge\n"
                  f"data_file = {tmp / '.coverage'}\n")
    return rc


def test_unasked_nothing_is_measured_and_coverage_is_not_imported(tmp_path: Path) -> None:
    assert _run({}, tmp_path) == "False False None"
    assert not list(tmp_path.glob(".coverage*"))


def test_asked_the_process_measures_what_runs_after_its_entry_point(tmp_path: Path) -> None:
    out = _run({measure.VARIABLE: str(_config(tmp_path))}, tmp_path)
    # started here; coverage.py's own variable is not left for the programs it starts
    assert out == "True True None"
    data = list(tmp_path.glob(".coverage.*"))
    assert len(data) == 1, data
    with sqlite3.connect(data[0]) as db:
        files = {row[0] for row in db.execute("select path from file")}
    assert any(path.endswith(os.path.join("edge", "boundary.py")) for path in files), files


def test_a_process_measured_from_start_up_is_not_started_twice(tmp_path: Path) -> None:
    """A test process (measured by coverage.py's hook since start-up) that runs a command
    in-process through the boundary keeps its one measurement."""
    rc = str(_config(tmp_path))
    out = _run({"COVERAGE_PROCESS_START": rc, measure.VARIABLE: rc}, tmp_path)
    assert out == f"False True {rc}"
    assert len(list(tmp_path.glob(".coverage.*"))) == 1


class _FakeCoverage:
    """coverage.py as start_if_asked uses it: what it started with, and whether it runs."""

    def __init__(self, running: bool = False) -> None:
        self.running = running
        self.started_with: list[str | None] = []
        self.environ: dict[str, str] = {}

    def module(self) -> ModuleType:
        def process_startup() -> object | None:
            self.started_with.append(self.environ.get("COVERAGE_PROCESS_START"))
            self.running = True
            return object()

        fake = ModuleType("coverage")
        fake.Coverage = SimpleNamespace(  # type: ignore[attr-defined]
            current=lambda: object() if self.running else None)
        fake.process_startup = process_startup  # type: ignore[attr-defined]
        return fake


def test_the_variable_is_set_only_for_the_start_and_an_earlier_value_comes_back() -> None:
    fake = _FakeCoverage()
    fake.environ.update({measure.VARIABLE: "/etc/cov.toml"})
    assert measure.start_if_asked(fake.environ, load=fake.module)
    assert fake.started_with == ["/etc/cov.toml"]
    assert "COVERAGE_PROCESS_START" not in fake.environ
    # measured already: nothing started again
    assert not measure.start_if_asked(fake.environ, load=fake.module)
    assert fake.started_with == ["/etc/cov.toml"]

    other = _FakeCoverage()
    other.environ.update({measure.VARIABLE: "/etc/cov.toml", "COVERAGE_PROCESS_START": "x"})
    assert measure.start_if_asked(other.environ, load=other.module)
    assert other.started_with == ["/etc/cov.toml"]
    assert other.environ["COVERAGE_PROCESS_START"] == "x"


def test_without_coverage_installed_a_program_runs_unmeasured() -> None:
    environ = {measure.VARIABLE: "/etc/cov.toml"}
    assert not measure.start_if_asked(environ, load=lambda: None)
    assert environ == {measure.VARIABLE: "/etc/cov.toml"}
