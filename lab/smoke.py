"""``pinhole-lab smoke``: the smoke meeting at the end of ``docker compose up``.

Each client service runs its call through ``smoke client``; the ``smoke`` service waits for
their results with ``smoke wait`` and is the one service that exits, so that
``docker compose up --exit-code-from smoke`` ends with the two clients' results and exits
non-zero when media failed (with Compose v1 too, where any exiting container ends ``up``).

- ``smoke client --out FILE -- COMMAND…`` removes FILE (a result from an earlier ``up``
  never counts), runs COMMAND (``pinhole … call --json``) passing its output through, writes
  FILE: the JSON the call printed, its ``exit_code`` and, when it failed, the ``error`` it
  printed, and which process wrote it. Then it stays up until stopped: a client that is
  done is healthy, not gone.
- ``smoke ready --out FILE`` (the client's healthcheck) exits 0 when FILE holds a result
  written by a ``smoke client`` that is still running. A result an earlier ``up`` left in
  the volume never makes a client healthy, even in the moment before its new ``smoke
  client`` has removed it: the smoke meeting would read it and end ``up`` on it.
  In the image (``PINHOLE_HEALTH_DIR``), ``--wait-s S`` makes a check wait up to S seconds
  for that result, and ``--hold-s S`` holds a check that follows a healthy one while the
  result stays there (lab.health.held).
- ``smoke wait --results DIR --client NAME…`` waits for each ``DIR/NAME.json``, prints one
  line per client (how its media got through, or why it failed) and the verdict, and exits
  0 when every client received media, 1 when one did not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edge import measure
from edge.flags import seconds

ERROR_TAIL = 500  # characters of a failed call's stderr kept in its result


def media_ok(result: Mapping[str, Any]) -> bool:
    """The call exited 0 and received media."""
    received = result.get("packets_received")
    return result.get("exit_code") == 0 and isinstance(received, int) and received > 0


def line(name: str, result: Mapping[str, Any]) -> str:
    """One line for a client: its transport, node and media, or why it failed."""
    text = (f"{name}: {result.get('transport') or 'no media'} via {result.get('node') or '-'}, "
            f"{result.get('packets_received', 0)} packets received, "
            f"loss {result.get('loss', '-')}")
    if media_ok(result):
        return text
    code = result.get("exit_code")
    reason = str(result.get("error") or "").strip().splitlines()
    why = reason[-1] if reason else "no packet received"
    return text + (f"; FAILED (exit code {code}): {why}" if code else f"; FAILED: {why}")


def verdict(results: Mapping[str, Mapping[str, Any]]) -> bool:
    return bool(results) and all(media_ok(r) for r in results.values())


def _started(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # proc(5): field 22 is starttime; the fields after the name (field 2, in parentheses)
    # start at field 3
    return int(stat[stat.rindex(")") + 2:].split()[19])


def writer() -> dict[str, int | None]:
    """This process, as a result names the process that wrote it."""
    return {"pid": os.getpid(), "started": _started(os.getpid())}


def written_by_a_live_client(out: Path) -> bool:
    """``out`` holds a result whose writer is still running (not one from an earlier up:
    that process is gone, and a process with its pid started at another time)."""
    try:
        result = json.loads(out.read_text())
        pid, started = result["writer"]["pid"], result["writer"]["started"]
    except (OSError, ValueError, TypeError, KeyError):
        return False
    return isinstance(pid, int) and started is not None and _started(pid) == started


def run_client(out: Path, argv: Sequence[str]) -> dict[str, Any]:
    """Run one client's call; write and return its result."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
        code, stdout, stderr = done.returncode, done.stdout, done.stderr
    except OSError as exc:
        code, stdout, stderr = 127, "", f"cannot run {argv[0]}: {exc}"
    sys.stdout.write(stdout)
    sys.stderr.write(stderr)
    try:
        printed = json.loads(stdout) if stdout.strip() else {}
    except ValueError:
        printed = {"unparsed": stdout[-ERROR_TAIL:]}
    result: dict[str, Any] = {**(printed if isinstance(printed, dict) else {}),
                              "exit_code": code, "writer": writer()}
    if code:  # the one line the call printed on stderr, else its --json error document
        said = printed.get("error") if isinstance(printed, dict) else None
        message = said.get("message") if isinstance(said, dict) else None
        result["error"] = stderr[-ERROR_TAIL:].strip() or str(message or "")
    partial = out.with_suffix(".part")
    partial.write_text(json.dumps(result))
    partial.rename(out)  # the result appears whole or not at all
    return result


def read_results(directory: Path, names: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """The results written so far: ``names``, or every ``*.json`` in ``directory``."""
    paths = ([directory / f"{n}.json" for n in names] if names
             else sorted(directory.glob("*.json")))
    found = {}
    for path in paths:
        with contextlib.suppress(OSError, ValueError):
            found[path.stem] = json.loads(path.read_text())
    return found


def wait(directory: Path, names: Sequence[str], timeout_s: float,
         poll_s: float = 0.5) -> dict[str, dict[str, Any]]:
    """Each client's result; a client with none by ``timeout_s`` fails with that reason."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = read_results(directory, names)
        if len(found) == len(names) or time.monotonic() > deadline:
            break
        time.sleep(poll_s)
    for name in names:
        found.setdefault(name, {"exit_code": None,
                                "error": f"no result in {directory} after {timeout_s:.0f} s"})
    return found


def _stay_up() -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    measure.start_if_asked(os.environ)  # under make test (edge/measure.py)
    raw = list(sys.argv[1:] if argv is None else argv)
    command = raw[raw.index("--") + 1:] if "--" in raw else []
    p = argparse.ArgumentParser(prog="pinhole-lab smoke", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True)
    c = sub.add_parser("client", help="run a client's call (after --), write its result")
    c.add_argument("--out", type=Path, required=True, help="the result file (JSON)")
    c.add_argument("--exit", action="store_true",
                   help="exit with the call's code instead of staying up until stopped")
    r = sub.add_parser("ready", help="exit 0 when --out holds a result a running client wrote "
                       "(the client's healthcheck)")
    r.add_argument("--out", type=Path, required=True, help="the client's result file")
    r.add_argument("--wait-s", type=float, default=0.0,
                   help="with PINHOLE_HEALTH_DIR, wait up to this long for the result")
    r.add_argument("--hold-s", type=float, default=0.0,
                   help="with PINHOLE_HEALTH_DIR, hold a check that follows a healthy one "
                   "for up to this long while the result stays there")
    w = sub.add_parser("wait", help="wait for the clients' results; exit 1 if media failed")
    w.add_argument("--results", type=Path, required=True, help="where the clients write")
    w.add_argument("--client", action="append", required=True, help="a client; repeatable")
    w.add_argument("--timeout-s", type=seconds(86400), default=300.0,
                   help="a client with no result by then has failed")
    w.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = p.parse_args(raw[:raw.index("--")] if "--" in raw else raw)
    if args.action == "client":
        if not command:
            p.error("smoke client needs the call after --, e.g. -- pinhole … call --json")
        result = run_client(args.out, command)
        if not args.exit:
            _stay_up()
        return int(result["exit_code"])
    if args.action == "ready":
        from lab.health import held, marker

        problem = held(lambda: None if written_by_a_live_client(args.out) else "no result",
                       marker(f"smoke ready {args.out}"), args.hold_s, args.wait_s)
        return 0 if problem is None else 1
    results = wait(args.results, args.client, args.timeout_s)
    ok = verdict(results)
    if args.json:
        print(json.dumps({"clients": results, "ok": ok}, indent=2))
    else:
        for name, result in results.items():
            print(line(name, result))
        print("smoke meeting: " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
