"""README.md's "Running it" block runs verbatim, from the repository root, as a reader
would type it (defect: ``pinhole-lab stack --state-dir run/stack`` wrote
``"ca": "run/stack/ca.pem"`` into stack.json, the client resolved it against stack.json's
folder, and every ``pinhole --stack run/stack/stack.json …`` exited 2). The block is parsed
out of the README, so drift is caught; only the ``mtg-…`` placeholder is replaced, by the id
``meeting create`` printed. Also: stack.json works from any working directory, with the
default state directory too; and a call prints nothing that looks like a crash (defect:
``Task was destroyed but it is pending!`` after every ``pinhole call``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge import measure

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
CRASH_WORDS = ("Task was destroyed", "Traceback", "Exception ignored")
READY = "stack running; Ctrl-C stops it"
PLACEHOLDER = "mtg-…"


def running_it() -> list[str]:
    """The command lines of the first fenced block under "## Running it"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Running it\n", 1)[1]
    block = section.split("```", 2)[1]
    return [line for line in block.splitlines()[1:] if line.strip()
            and not line.strip().startswith("#")]


def environment(tmp: Path) -> dict[str, str]:
    """The reader's, with no PINHOLE_* or proxy setting, and a cache of its own (the
    suite's coverage measurement stays: edge/measure.py)."""
    env = {k: v for k, v in os.environ.items()
           if (k == measure.VARIABLE or not k.startswith("PINHOLE_"))
           and k.lower() not in {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}}
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    return env


def start(command: list[str], cwd: Path, env: dict[str, str], log: Path
          ) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while READY not in log.read_text(errors="replace"):
        assert proc.poll() is None, f"the stack exited {proc.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"the stack is not up:\n{log.read_text()}"
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as the README says; the stack then stops every process it started."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def run(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_running_it_block_works_as_written(tmp_path: Path) -> None:
    lines = running_it()
    assert lines[0].startswith(".venv/bin/pinhole-lab stack --state-dir run/stack"), lines
    assert any(PLACEHOLDER in line for line in lines)
    state = ROOT / "run" / "stack"
    existed = state.exists()
    env = environment(tmp_path)
    log = tmp_path / "stack.log"
    stack = start(["bash", "-c", lines[0]], ROOT, env, log)  # in the background
    meeting = ""
    try:
        wait_ready(stack, log)
        assert (state / "stack.json").exists()
        for line in lines[1:]:
            command = line.replace(PLACEHOLDER, meeting) if PLACEHOLDER in line else line
            done = run(command, ROOT, env)
            assert done.returncode == 0, f"$ {command}\n{done.stdout}\n{done.stderr}"
            for word in CRASH_WORDS:
                assert word not in done.stderr, f"$ {command}\n{done.stderr}"
            if "meeting create" in line:
                meeting = done.stdout.strip()
                assert meeting.startswith("mtg-"), done.stdout
    finally:
        stop(stack)
        if not existed:
            shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def default_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``pinhole-lab stack`` with its default state directory (run/stack), started in a
    directory of its own; yields that directory."""
    home = tmp_path_factory.mktemp("lab")
    log = home / "stack.log"
    proc = start([str(VENV_BIN / "pinhole-lab"), "stack"], home, environment(home), log)
    try:
        wait_ready(proc, log)
        yield home
    finally:
        stop(proc)


def test_stack_json_works_from_another_directory(default_stack: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    relative = os.path.relpath(default_stack / "run" / "stack" / "stack.json", elsewhere)
    done = run(f"{VENV_BIN / 'pinhole'} --stack {relative} register", elsewhere,
               environment(tmp_path))
    assert done.returncode == 0, done.stderr


def test_a_relative_pki_directory_works_from_another_directory(tmp_path: Path) -> None:
    """``pinhole-lab pki --out rel`` writes stack.json through the same code as the stack;
    ``pinhole pin`` reads it (the CA must resolve) without any network."""
    env = environment(tmp_path)
    made = run(f"{VENV_BIN / 'pinhole-lab'} pki --out run/pki --cloud-url "
               "https://127.0.0.1:8443 --cert-name 127.0.0.1", tmp_path, env)
    assert made.returncode == 0, made.stderr
    (tmp_path / "other").mkdir()
    shown = run(f"{VENV_BIN / 'pinhole'} --stack ../run/pki/stack.json pin",
                tmp_path / "other", env)
    assert shown.returncode == 0, shown.stderr


def test_a_call_prints_nothing_that_looks_like_a_crash(default_stack: Path,
                                                       tmp_path: Path) -> None:
    stack_json = default_stack / "run" / "stack" / "stack.json"
    done = subprocess.run(
        [sys.executable, "-m", "client", "--stack", str(stack_json), "call", "--meeting",
         "readme-call", "--create", "--seconds", "1", "--json"],
        env=environment(tmp_path), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    for word in CRASH_WORDS:
        assert word not in done.stderr, done.stderr


def test_an_unknown_meeting_exits_2_with_a_hint(default_stack: Path, tmp_path: Path) -> None:
    stack_json = default_stack / "run" / "stack" / "stack.json"
    done = subprocess.run(
        [sys.executable, "-m", "client", "--stack", str(stack_json), "call", "--meeting",
         "mtg-nobody-made", "--seconds", "1", "--json"],
        env=environment(tmp_path), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "pinhole meeting create" in done.stderr
    assert json.loads(done.stdout)["error"]["code"] == "unknown_meeting"
