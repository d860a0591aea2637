"""``python -m bench`` has a ``--help`` and says what to do with a wrong name.

The defect it pins down: ``python -m bench --help`` ignored its argument and
ran every benchmark (minutes of load on both cores) instead of printing help.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_help_prints_usage_and_runs_nothing() -> None:
    done = _bench("--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: python -m bench") and "time_to_media" in done.stdout
    assert done.stderr == ""  # no benchmark started (each says what it does on stderr)


def test_an_unknown_benchmark_is_a_usage_error_naming_the_choices() -> None:
    done = _bench("relya")
    assert done.returncode == 2
    assert "no benchmark relya; choose from relay, stun" in done.stderr
