"""docs/testing-your-client.md runs as written, in a project outside the repository.

Its Python blocks are the files of a new project (each block's first line, ``# NAME``,
names its file: the reader saves it so); its ````console```` blocks run there, command by
command, in one bash shell with the venv first on PATH, as docs/labs' are
(tests/lab/test_docs_labs.py's convention: ``$ `` starts a command, the lines up to the
next are output that must appear in order, ``...`` matches anything, ``# exit N`` the
status it must end with). So the three-line test, the profiles test, switching profiles
mid-test, the skip without root and the failure under ``CI=true`` and the API without
pytest are all run against the plugin as the installed package gives it (the project has
no conftest.py and no pytest configuration: the ``pytest11`` entry point loads it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge import measure
from tests.lab.test_docs_labs import Step, parse, screen, unmatched
from tests.prereqs import require_root, require_tool

pytestmark = [pytest.mark.lab, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "testing-your-client.md"
FILE_LINE = re.compile(r"#\s*(\S+\.py)\s*$")


def python_files(text: str) -> dict[str, str]:
    """The ````python```` blocks, by the file name on their first line."""
    files: dict[str, str] = {}
    for block in re.findall(r"^```python\n(.*?)^```", text, re.M | re.S):
        name = FILE_LINE.fullmatch(block.splitlines()[0])
        assert name, f"a python block does not name its file on its first line: {block[:60]!r}"
        files[name.group(1)] = block
    return files


def test_every_python_block_names_a_file_and_every_console_block_parses() -> None:
    text = DOC.read_text()
    assert set(python_files(text)) == {"test_fallback.py", "test_profiles.py",
                                       "use_the_api.py"}
    assert len(parse(text)) >= 6


@pytest.fixture
def project() -> Iterator[Path]:
    """A new project outside the repository (readable by an unprivileged user too, for the
    command that runs without root), holding the doc's files."""
    folder = Path(tempfile.mkdtemp(prefix="pinhole-doc-project-"))
    try:
        folder.chmod(0o777)
        for name, code in python_files(DOC.read_text()).items():
            (folder / name).write_text(code)
            (folder / name).chmod(0o644)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _environment() -> dict[str, str]:
    """The reader's: the venv first on PATH, no CI (a command sets it itself), nothing of
    this pytest run's."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"CI", "COVERAGE_PROCESS_START", measure.VARIABLE,
                         "PYTEST_CURRENT_TEST"}
           and not k.startswith("PYTEST_XDIST")}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def _run(step: Step, cwd: Path) -> tuple[int, list[str]]:
    done = subprocess.run(["bash", "-c", step.command], cwd=cwd, env=_environment(),
                          capture_output=True, timeout=600, check=False)
    return done.returncode, screen(done.stdout + done.stderr)


def test_the_doc_runs_as_written(project: Path) -> None:
    require_root()
    for tool in ("ip", "nft", "tinyproxy", "unshare"):
        require_tool(tool)
    for step in parse(DOC.read_text()):
        status, output = _run(step, project)
        shown = "\n".join(output[-60:])
        assert status == step.exit_status, (
            f"line {step.line}: {step.command!r} exited {status}, not "
            f"{step.exit_status}:\n{shown}")
        missing = unmatched(step.expected, output)
        assert missing is None, (f"line {step.line}: {step.command!r} did not show "
                                 f"{missing!r}:\n{shown}")
