"""``make fuzz``: coverage-guided fuzzing (atheris, libFuzzer) of every parser and boundary.

    python -m tests.fuzz [--count N] [--targets stun,framing,...] [--corpus DIR]
                         [--crashes DIR] [--max-len BYTES] [--json]

Each target of :mod:`tests.fuzz.targets` runs in its own process for
``--count`` inputs (default 10^6), starting from the saved corpus
(``tests/fuzz/corpus/<target>/``, seeded with valid inputs) and adding to it
every input that reaches new code. An input that crashes a target is saved
as ``tests/fuzz/crashes/<target>-<sha1>``; the test suite replays every saved
crash and the whole corpus (``tests/unit/test_fuzz_corpus.py``), so a crash,
once fixed, stays a regression test. Progress goes to stderr; the summary
(inputs run per target, seconds, inputs per second, the code edges reached, corpus
size, crashes) to stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.fuzz.seeds import SEEDS
from tests.fuzz.targets import TARGETS

HERE = Path(__file__).resolve().parent
_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_COVERAGE = re.compile(r"\bcov: (\d+) ft: (\d+)")


@dataclass
class Result:
    target: str
    runs: int
    seconds: float
    corpus: int
    crashed: bool
    crash_files: list[str]
    coverage: int | None = None  # libFuzzer's "cov": code edges the inputs reached
    features: int | None = None  # its "ft": edges with hit counts, what keeps an input

    @property
    def per_second(self) -> float:
        return round(self.runs / self.seconds) if self.seconds else 0.0


def seed(corpus: Path, target: str) -> Path:
    """The target's corpus directory, with the valid seeds in it."""
    directory = corpus / target
    directory.mkdir(parents=True, exist_ok=True)
    for data in SEEDS.get(target, []):
        (directory / ("seed-" + hashlib.sha1(data).hexdigest())).write_bytes(data)
    return directory


def run(target: str, count: int, corpus: Path, crashes: Path, max_len: int) -> Result:
    directory = seed(corpus, target)
    crashes.mkdir(parents=True, exist_ok=True)
    before = set(crashes.iterdir())
    start = time.monotonic()
    # The target's scratch files go to a TMPDIR of its own, removed here: libFuzzer ends
    # the process without Python's exit handlers. For the same reason coverage (which the
    # suite turns on in every process it starts) never saves a target's data: measuring one
    # only doubled its time (300 inputs: 4.4 s against 2.1 s), so a target runs without it.
    env = {k: v for k, v in os.environ.items() if k != "COVERAGE_PROCESS_START"}
    with tempfile.TemporaryDirectory(prefix="pinhole-fuzz-") as scratch:
        proc = subprocess.run(
            [sys.executable, "-m", "tests.fuzz.atheris_run", target, f"-runs={count}",
             f"-max_len={max_len}", f"-artifact_prefix={crashes}/{target}-",
             "-print_final_stats=1", "-timeout=10", "-rss_limit_mb=1024", str(directory)],
            capture_output=True, text=True, check=False, env={**env, "TMPDIR": scratch})
    seconds = time.monotonic() - start
    done = _DONE.search(proc.stderr)
    stats = re.search(r"stat::number_of_executed_units:\s*(\d+)", proc.stderr)
    runs = int(done.group(1)) if done else int(stats.group(1)) if stats else 0
    new = sorted(str(p) for p in set(crashes.iterdir()) - before)
    crashed = proc.returncode != 0
    if crashed:
        print(proc.stderr[-4000:], file=sys.stderr)
    reached = _COVERAGE.findall(proc.stderr)  # the last status line: where it ended
    cov, ft = (int(reached[-1][0]), int(reached[-1][1])) if reached else (None, None)
    return Result(target, runs, round(seconds, 1), len(list(directory.iterdir())), crashed, new,
                  cov, ft)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=1_000_000, help="inputs per target (10^6)")
    p.add_argument("--targets", default=",".join(TARGETS),
                   help=f"comma-separated, of: {', '.join(TARGETS)}")
    p.add_argument("--corpus", type=Path, default=HERE / "corpus",
                   help="corpus directory (one sub-directory per target); grows as it runs")
    p.add_argument("--crashes", type=Path, default=HERE / "crashes",
                   help="where crashing inputs are saved (replayed by the test suite)")
    p.add_argument("--max-len", type=int, default=2048, help="longest input, bytes")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    a = p.parse_args(argv)
    names = [t.strip() for t in a.targets.split(",") if t.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        p.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    results = []
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] fuzzing {name}: {a.count} inputs", file=sys.stderr, flush=True)
        result = run(name, a.count, a.corpus, a.crashes, a.max_len)
        print(f"      {result.runs} inputs in {result.seconds} s, corpus {result.corpus}"
              + (f", CRASH: {result.crash_files}" if result.crashed else ""), file=sys.stderr)
        results.append(result)
    if a.json:
        print(json.dumps([{**asdict(r), "per_second": r.per_second} for r in results],
                         indent=2))
    else:
        for r in results:
            print(f"{r.target:20} {r.runs:>10} inputs {r.seconds:>8} s {r.per_second:>7}/s"
                  f"  cov {r.coverage if r.coverage is not None else '-':>5}"
                  f"  corpus {r.corpus:>5}"
                  f"  {'CRASH ' + ' '.join(r.crash_files) if r.crashed else 'ok'}")
    return 1 if any(r.crashed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
