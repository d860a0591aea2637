"""The labs in ``docs/labs/`` are run, command by command, so the docs cannot rot.

The convention (``docs/labs/README.md`` explains it to readers): in a ````console```` block a
line starting with ``$ `` is a command (a trailing ``\\`` continues it on the next line), and
the lines up to the next command are output the terminal must show, in that order, other lines
in between allowed. ``...`` inside a line matches any text, a line that is only ``...`` marks
omitted output, and runs of spaces match any run of spaces. A command must exit 0 unless it
ends with the comment ``# exit N``. A lab's commands run one after another in one bash shell,
on a terminal, at the repository root with the venv first on PATH, as a reader would type
them. Every ``--run-id NAME`` is replaced by a fresh name per test run, and every such lab is
torn down (``pinhole-lab netns down``) whatever happens.

The shell, and every process a lab starts from it (the stack, its nodes, the clients), runs
at a higher scheduling priority (:data:`LAB_NICE`). The labs teach by real round trips: the
nodes sit 10, 40 and 90 ms away, and the cloud places a call on the node measured nearest.
With a busy loop on every core and the rest of the suite beside it, a node's answer once
waited more than the 30 ms between node-near and node-mid for a core, the call went to
node-mid, and lab 04 showed another node than it documents. A reader's machine is not that
busy; the checker makes the lab's processes first in line for a core instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import select
import shutil
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge import measure
from tests.prereqs import require_root, require_tool

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
LABS = sorted((ROOT / "docs" / "labs").glob("[0-9][0-9]-*.md"))
VENV_BIN = ROOT / ".venv" / "bin"
COMMAND_TIMEOUT_S = 90.0
EXIT_MARK = re.compile(r"#\s*exit\s+(\d+)\s*$")
RUN_ID = re.compile(r"--run-id[ =](\S+)")
PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
LAB_NICE = -10


def _first_in_line() -> None:
    os.setpriority(os.PRIO_PROCESS, 0, LAB_NICE)


@dataclass
class Step:
    """One command of a lab, the output lines it must show and the exit status it must have."""

    command: str
    line: int  # where the command starts in the Markdown file (1-based)
    expected: list[str] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        mark = EXIT_MARK.search(self.command.splitlines()[-1])
        return int(mark.group(1)) if mark else 0


def parse(text: str) -> list[Step]:
    """The steps of every ````console```` block, in document order."""
    steps: list[Step] = []
    in_block = continued = False
    block_start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not in_block:
            in_block, block_start = stripped == "```console", len(steps)
            continue
        if stripped.startswith("```"):
            in_block = continued = False
            continue
        if continued:
            steps[-1].command += "\n" + raw
        elif raw.startswith("$ "):
            steps.append(Step(raw[2:], number))
        elif stripped and stripped != "...":
            if len(steps) == block_start:
                raise ValueError(f"line {number}: output before any command: {raw!r}")
            steps[-1].expected.append(stripped)
        continued = raw.endswith("\\") and (continued or raw.startswith("$ "))
    return steps


def pattern(expected: str) -> re.Pattern[str]:
    """The regular expression for one expected line, to match an output line whose runs of
    spaces are single spaces. ``...`` matches any text; "a ... b" also matches "a b"."""
    tokens = re.split(r"((?:\s*\.\.\.\s*)+)", re.sub(r"\s+", " ", expected.strip()))
    regex = ""
    for index, token in enumerate(tokens):
        if index % 2 == 0:
            regex += re.escape(token)
            continue
        at_start = index == 1 and not tokens[0]
        at_end = index == len(tokens) - 2 and not tokens[-1]
        spaced = (token.startswith(" "), token.endswith(" "))
        if at_start or at_end:
            regex += ("(?:.* )?" if not at_end and spaced[1]
                      else "(?: .*)?" if not at_start and spaced[0] else ".*")
        else:
            regex += {(True, True): "(?: .* | )", (True, False): " .*",
                      (False, True): ".* ", (False, False): ".*"}[spaced]
    return re.compile(regex)


def screen(raw: bytes) -> list[str]:
    """What a terminal shows for ``raw``: a carriage return rewrites its line."""
    lines = []
    for line in raw.decode(errors="replace").split("\n"):
        lines.append(line.rstrip("\r").rsplit("\r", 1)[-1].rstrip())
    return lines


def unmatched(expected: list[str], output: list[str]) -> str | None:
    """The first expected line that no output line matches in order, else None."""
    position = 0
    for line in expected:
        regex = pattern(line)
        for index in range(position, len(output)):
            if regex.fullmatch(" ".join(output[index].split())):
                position = index + 1
                break
        else:
            return line
    return None


class Shell:
    """One bash process on a pseudo-terminal: the reader's terminal, for a whole lab."""

    def __init__(self, env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], stdin=subprocess.PIPE, stdout=slave,
            stderr=slave, cwd=ROOT, env=env, start_new_session=True,
            preexec_fn=_first_in_line)
        os.close(slave)
        self.mark = "--pinhole-lab-step-" + secrets.token_hex(8) + "--"

    def run(self, command: str, timeout_s: float = COMMAND_TIMEOUT_S) -> tuple[int, list[str]]:
        """Run ``command`` as typed; its exit status and the lines the terminal showed."""
        assert self.proc.stdin is not None
        script = (f"{{ {command}\n}} </dev/null\n"
                  f"printf '\\n%s %s\\n' '{self.mark}' \"$?\"\n")
        self.proc.stdin.write(script.encode())
        self.proc.stdin.flush()
        seen = b""
        done = re.compile(re.escape(self.mark).encode() + rb" (\d+)\r?\n")
        deadline = time.monotonic() + timeout_s
        while not (found := done.search(seen)):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                why = "timed out" if left <= 0 else "the shell exited"
                raise AssertionError(f"$ {command}\n{why}; the terminal showed:\n"
                                     + "\n".join(screen(seen)))
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    seen += os.read(self.master, 65536)
                except OSError:  # EIO: the terminal's other end is closed
                    time.sleep(0.05)
        lines = screen(seen[:found.start()])
        if lines and not lines[-1]:
            lines.pop()  # the newline printed before the mark
        return int(found.group(1)), lines

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        os.close(self.master)


def fresh_ids(steps: list[Step]) -> dict[str, str]:
    """A new run id for every one the lab names (short: interface names carry it)."""
    names = {name for step in steps for name in RUN_ID.findall(step.command)}
    return {name: "d" + secrets.token_hex(3) for name in sorted(names)}


def rename(text: str, ids: dict[str, str]) -> str:
    """Every run id in ``text`` (``lab1``, ``run/lab-lab1``, ``lab1-gw``, and the lab's veths
    ``lab1a`` … ``lab1d``) with its fresh name."""
    for old, new in ids.items():
        text = re.sub(rf"\b{re.escape(old)}(?=[a-d]?\b)", new, text)
    return text


def environment() -> dict[str, str]:
    """The reader's: the venv first on PATH; no PINHOLE_* setting or proxy variable that the
    labs do not set themselves (the suite's coverage measurement stays: edge/measure.py)."""
    env = {k: v for k, v in os.environ.items()
           if (k == measure.VARIABLE or not k.startswith("PINHOLE_"))
           and k.lower() not in PROXY_VARIABLES}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["TERM"] = "dumb"
    return env


@contextlib.contextmanager
def torn_down(ids: dict[str, str]) -> Iterator[None]:
    """Whatever happens, remove every lab the doc brought up and its state directory."""
    try:
        yield
    finally:
        for run_id in ids.values():
            subprocess.run([str(VENV_BIN / "pinhole-lab"), "netns", "down", "--run-id", run_id],
                           cwd=ROOT, capture_output=True, timeout=60, check=False)
            shutil.rmtree(ROOT / "run" / f"lab-{run_id}", ignore_errors=True)


#: the labs this file runs; the later ones run from test_docs_labs_later.py, so that the
#: suite's workers (a file's tests run on one) share the labs' minutes
FIRST_HALF = LABS[: len(LABS) // 2]


@pytest.mark.parametrize("doc", FIRST_HALF, ids=[p.stem for p in FIRST_HALF])
def test_lab_commands_show_the_documented_output(doc: Path) -> None:
    check_lab(doc)


def check_lab(doc: Path) -> None:
    """Run ``doc``'s commands as a reader would and check what each shows."""
    require_root()
    for tool in ("ip", "nft", "conntrack", "tinyproxy", "turnutils_stunclient",
                 "turnserver"):
        require_tool(tool)
    steps = parse(doc.read_text())
    ids = fresh_ids(steps)
    assert steps and ids, f"{doc.name}: no console commands or no --run-id"
    shell = Shell(environment())
    with torn_down(ids):
        try:
            for step in steps:
                command = rename(step.command, ids)
                status, output = shell.run(command)
                shown = "\n".join(output)
                assert status == step.exit_status, (
                    f"{doc.name}:{step.line}: $ {command}\nexited {status}, "
                    f"expected {step.exit_status}; output:\n{shown}")
                missing = unmatched([rename(e, ids) for e in step.expected], output)
                assert missing is None, (
                    f"{doc.name}:{step.line}: $ {command}\nexpected line not found (in order): "
                    f"{missing!r}\nactual output:\n{shown}")
        finally:
            shell.close()


def test_every_lab_brings_its_lab_up_and_down() -> None:
    """Each lab is complete: learn, set up, steps, clean up; and the index lists it."""
    assert len(LABS) >= 6
    index = (ROOT / "docs" / "labs" / "README.md").read_text()
    for doc in LABS:
        text = doc.read_text()
        steps = parse(text)
        commands = [s.command for s in steps]
        assert any("netns up" in c for c in commands), doc.name
        assert "netns down" in commands[-1], f"{doc.name}: the last command must clean up"
        for heading in ("## What you will learn", "## Set-up", "## Clean-up"):
            assert heading in text, f"{doc.name}: missing {heading!r}"
        assert f"({doc.name})" in index, f"README.md does not link {doc.name}"


def test_a_labs_processes_run_first_in_line_for_a_core() -> None:
    """What the lab starts inherits the shell's priority (the module's docstring)."""
    require_root()
    shell = Shell(environment())
    try:
        status, lines = shell.run("python3 -c 'import os; print(os.nice(0))'")
    finally:
        shell.close()
    assert (status, [line for line in lines if line]) == (0, [str(LAB_NICE)])


def test_the_checker_fails_on_output_that_differs() -> None:
    """The convention can fail: a missing line, a wrong order or a wrong value is caught."""
    doc = ("```console\n$ pinhole-lab netns up --run-id lab9 \\\n    --profile open\n"
           "{\"run_id\": \"lab9\", ...}\n...\n$ false  # exit 1\n```\n")
    steps = parse(doc)
    assert [s.command for s in steps] == [
        "pinhole-lab netns up --run-id lab9 \\\n    --profile open", "false  # exit 1"]
    assert steps[0].expected == ['{"run_id": "lab9", ...}'] and steps[1].exit_status == 1
    table = ["node       rung      rtt_ms  score", "node-near  udp/5004  10.61   10.61"]
    assert unmatched(["node rung rtt_ms score", "node-near udp/5004 ... ..."], table) is None
    assert unmatched(["node-near udp/5004 ... ...", "node rung rtt_ms score"], table) == (
        "node rung rtt_ms score")  # order matters
    assert unmatched(["node-near tls/443 ..."], table) == "node-near tls/443 ..."
    assert unmatched(["packets 1 bytes ..."], ["packets 10 bytes 34"]) is not None
    assert unmatched(["a ... b"], ["a b"]) is None
    assert screen(b"\rprobed 1/12\rprobed 12/12\r\nok\r\r\n") == ["probed 12/12", "ok", ""]
    ids = {"lab9": "d0a1b2c"}
    assert rename("--run-id lab9 run/lab-lab9/stack.json lab9-gw lab9d@if3 lab90", ids) == (
        "--run-id d0a1b2c run/lab-d0a1b2c/stack.json d0a1b2c-gw d0a1b2cd@if3 lab90")
    with pytest.raises(ValueError, match="output before any command"):
        parse("```console\nstray output\n```\n")
