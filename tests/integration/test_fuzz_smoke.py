"""A short run of ``make fuzz`` (every target, a few hundred inputs each) in the suite.

The long run (10^6 inputs per target) is ``make fuzz``; this proves that
the runner, atheris and every target still work together, from each target's
seeds. The saved corpus is replayed in-process by tests/unit/test_fuzz_corpus.py
(replaying it here too made this the suite's slowest test: 100 s).

It also pins a leak: every process that imported the targets made a scratch folder in the
temporary directory and never removed it (a machine that ran the suite often had 880).

And what a target's process imports and instruments: only its parser's packages (each
process instrumented and imported every parser, 2 s of CPU a target, nearly all of this
run), yet every Pinhole function its parse runs on its inputs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.__main__ import seed
from tests.fuzz.targets import PACKAGES, TARGETS
from tests.prereqs import require

pytestmark = pytest.mark.slow

#: Targets whose whole parse is pydantic-core's (compiled, not instrumented by atheris): a
#: model without validators of ours. libFuzzer mutates their inputs blind.
COMPILED = {"control_from_node", "stack_json"}

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
#: Pinhole's packages; wire and edge are the layers the others build on
PINHOLE = {"wire", "edge", "cloud", "client", "media_node", "hybrid_node", "lab"}
BASE = {"wire", "edge"}

#: Loads a target as its fuzzing process does (tests/fuzz/atheris_run.py), then runs it over
#: the inputs named on its command line; prints what of Pinhole it imported before the
#: target, with it, which modules atheris's hook instrumented, and which modules' functions
#: the target called. The hook picks its modules as ever, but leaves their code as it is:
#: instrumenting it only costs time here.
_PROBE = """
import contextlib, io, json, sys
from pathlib import Path

import atheris.import_hook

atheris.import_hook.patch_code = lambda code, *args, **kwargs: code

from tests.fuzz.atheris_run import load

PINHOLE = set(json.loads(sys.argv[1]))
name, inputs = sys.argv[2], [Path(p).read_bytes() for p in sys.argv[3:]]


def ours(modules):
    return sorted(m for m in modules if m.partition(".")[0] in PINHOLE)


before = ours(sys.modules)
log = io.StringIO()
with contextlib.redirect_stderr(log):
    target = load(name)
loaded = ours(sys.modules)
called = set()


def profile(frame, event, arg):
    if event == "call":
        called.add(frame.f_globals.get("__name__", ""))


sys.setprofile(profile)
for data in inputs:
    target(data)
sys.setprofile(None)
instrumented = [line.split()[-1] for line in log.getvalue().splitlines()
                if line.startswith("INFO: Instrumenting ")]
print(json.dumps({"before": before, "loaded": loaded, "instrumented": ours(instrumented),
                  "called": ours(called)}))
"""


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


@pytest.mark.parametrize("name", list(TARGETS))
def test_a_targets_process_imports_its_parser_only_and_instruments_all_its_parse_runs(
        name: str, tmp_path: Path) -> None:
    require(importlib.util.find_spec("atheris") is not None, "needs atheris (pip: .[test])")
    inputs = [*seed(tmp_path / "seeds", name).iterdir(),
              *(FUZZ / "corpus" / name).glob("*"), *(FUZZ / "crashes").glob(f"{name}-*")]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "COVERAGE_PROCESS_START"}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(sorted(PINHOLE)), name, *map(str, inputs)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**env, "TMPDIR": str(scratch)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.splitlines()[-1])
    # nothing of Pinhole is imported before the hook is in place (it would go uninstrumented)
    assert seen["before"] == [], seen["before"]
    loaded = {m.partition(".")[0] for m in seen["loaded"]}
    # defect: every target's process imported (and instrumented) every parser: the cloud's,
    # the client's, the media node's
    assert loaded <= set(PACKAGES[name]) | BASE, (name, sorted(loaded))
    if PACKAGES[name] == ("wire",):
        assert loaded == {"wire"}, (name, sorted(loaded))
    instrumented = set(seen["instrumented"])
    assert instrumented, name
    assert {m.partition(".")[0] for m in instrumented} <= set(PACKAGES[name]), name
    # every Pinhole function the target's inputs run was imported with it and instrumented
    assert set(seen["called"]) <= instrumented, (name, set(seen["called"]) - instrumented)
    assert list(scratch.iterdir()) == []
