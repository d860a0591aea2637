"""A short run of ``make fuzz`` (every target, a few hundred inputs each) in the suite.

The long run (10^6 inputs per target) is ``make fuzz``; this proves that
the runner, atheris and every target still work together, from each target's
seeds. The saved corpus is replayed in-process by tests/unit/test_fuzz_corpus.py
(replaying it here too made this the suite's slowest test: 100 s).

It also pins a leak: every process that imported the targets made a scratch folder in the
temporary directory and never removed it (a machine that ran the suite often had 880).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS
from tests.prereqs import require

pytestmark = pytest.mark.slow

#: Targets whose whole parse is pydantic-core's (compiled, not instrumented by atheris): a
#: model without validators of ours. libFuzzer mutates their inputs blind.
COMPILED = {"control_from_node", "stack_json"}


def test_a_short_fuzz_run_of_every_target(tmp_path: Path) -> None:
    require(importlib.util.find_spec("atheris") is not None, "needs atheris (pip: .[test])")
    corpus, crashes = tmp_path / "corpus", tmp_path / "crashes"  # the runner seeds it
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz", "--count", "300", "--corpus", str(corpus),
         "--crashes", str(crashes), "--json"],
        capture_output=True, text=True, timeout=240, check=False,
        env={**os.environ, "TMPDIR": str(scratch)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {r["target"]: r for r in json.loads(proc.stdout)}
    assert set(results) == set(TARGETS)
    for name, r in results.items():
        assert r["runs"] >= 300 and not r["crashed"], (name, r)
        assert r["per_second"] > 0, (name, r)
        if name in COMPILED:  # nothing of ours runs: libFuzzer reports no coverage at all
            assert r["coverage"] is None, (name, r)
        else:  # defect: cache_files ran the client's code, which was not instrumented
            assert r["coverage"] > 0 and r["features"] >= r["coverage"], (name, r)
    assert not list(crashes.iterdir())
    assert list(scratch.iterdir()) == []  # the runner and its targets left nothing behind
