"""A short run of ``make fuzz`` (every target, a few hundred inputs each) in the suite.

The long run (10^6 inputs per target) is ``make fuzz``; this proves that
the runner, atheris and every target still work together, and that the
saved corpus gives no crash.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS
from tests.prereqs import require

pytestmark = pytest.mark.slow


def test_a_short_fuzz_run_of_every_target(tmp_path: Path) -> None:
    require(importlib.util.find_spec("atheris") is not None, "needs atheris (pip: .[test])")
    corpus, crashes = tmp_path / "corpus", tmp_path / "crashes"
    saved = Path(__file__).resolve().parent.parent / "fuzz" / "corpus"
    for target in TARGETS:  # start from the saved corpus, write to a copy
        (corpus / target).mkdir(parents=True)
        for f in (saved / target).glob("*"):
            (corpus / target / f.name).write_bytes(f.read_bytes())
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz", "--count", "300", "--corpus", str(corpus),
         "--crashes", str(crashes), "--json"],
        capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {r["target"]: r for r in json.loads(proc.stdout)}
    assert set(results) == set(TARGETS)
    for name, r in results.items():
        assert r["runs"] >= 300 and not r["crashed"], (name, r)
    assert not list(crashes.iterdir())
