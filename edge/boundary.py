"""One error boundary for every Pinhole command: a failure is one line on stderr
(and, under ``--json``, one ``{"error": {"code", "message", "hint"}}`` object on
stdout) with a documented exit code; never a traceback.

Exit codes, the same for ``pinhole``, ``pinhole-cloud``, ``pinhole-media-node``,
``pinhole-hybrid-node`` and ``pinhole-lab``:

    0  done
    1  anything else (the message says what)
    2  usage: a flag, an environment variable or a file it names is wrong
    3  cannot reach the cloud (or the proxy on the way to it)
    4  no media path: no node reachable on a transport the profile allows, or none of
       the plan reached the assigned node
    5  trust: the cloud's certificate or pinned key did not verify (TLS inspection?)

A command raises :class:`Failure` where it knows the flag, file or address at
fault; :func:`run` turns anything else into the most honest line it can.
Nothing here does I/O of its own (the streams are passed in), but for the test
suite's coverage measurement of the process (:mod:`edge.measure`).
"""

from __future__ import annotations

import errno
import json
import os
import ssl
import traceback
from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import TextIO

from edge import measure


class ExitCode(IntEnum):
    OK = 0
    OTHER = 1
    USAGE = 2
    NO_CLOUD = 3
    NO_MEDIA = 4
    TRUST = 5
    DEGRADED = 6  # netcheck: meetings work, but not on the best path


class Failure(Exception):
    """A failure a user can act on: an exit code, a short ``code``, the message, a hint."""

    def __init__(self, exit_code: ExitCode, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.code = code
        self.message = message
        self.hint = hint

    def line(self, prog: str) -> str:
        """One line: what happened; what to do next."""
        text = " ".join(f"{self.message}; {self.hint}".split()) if self.hint else self.message
        return f"{prog}: {text}"

    def as_dict(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message, "hint": self.hint}}


def usage(message: str, hint: str) -> Failure:
    return Failure(ExitCode.USAGE, "usage", message, hint)


def unreadable(flag: str, path: str, exc: OSError) -> Failure:
    """A file named by ``flag`` that cannot be used, with its name and the reason."""
    why = exc.strerror or type(exc).__name__
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != path else ""
    return usage(f"{flag} {path}: {why.lower()}{where}", f"check the path given to {flag}")


def readable_file(flag: str, path: str) -> None:
    """Raise a :class:`Failure` naming ``flag`` and ``path`` unless it is a readable file."""
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise unreadable(flag, path, exc) from None


def _os_reason(exc: OSError) -> str:
    if exc.errno is not None and exc.errno in errno.errorcode:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


def describe(exc: BaseException) -> Failure:
    """The most honest failure for an exception no command translated."""
    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Failure(ExitCode.TRUST, "tls_verify", f"a certificate did not verify: "
                       f"{getattr(exc, 'verify_message', None) or exc}",
                       "check --ca; a TLS-inspecting proxy presents its own certificate")
    if isinstance(exc, ssl.SSLError):
        return Failure(ExitCode.TRUST, "tls", f"TLS failed: {getattr(exc, 'reason', None) or exc}",
                       "check that the address serves TLS and that --ca is its CA")
    if isinstance(exc, TimeoutError):
        return Failure(ExitCode.NO_CLOUD, "timeout", "timed out: nothing answered",
                       "check the address and the network; an HTTP proxy may be needed")
    if isinstance(exc, OSError) and exc.filename is not None:
        return Failure(ExitCode.USAGE, "file", f"{exc.filename}: {_os_reason(exc)}",
                       "check the path")
    if isinstance(exc, ConnectionError):
        return Failure(ExitCode.NO_CLOUD, "unreachable", _os_reason(exc),
                       "check the address and that the service runs")
    if isinstance(exc, OSError):
        return Failure(ExitCode.OTHER, "os_error", _os_reason(exc), "check the address")
    return Failure(ExitCode.OTHER, "internal", f"unexpected {type(exc).__name__}: {exc}",
                   "this is a bug in Pinhole; PINHOLE_TRACEBACK=1 shows where")


def traceback_wanted(environ: Mapping[str, str]) -> bool:
    """``PINHOLE_TRACEBACK=1``: print the traceback too (for a bug report)."""
    return environ.get("PINHOLE_TRACEBACK", "").strip() == "1"


def emit(prog: str, failure: Failure, *, as_json: bool, out: TextIO, err: TextIO) -> int:
    """Print ``failure`` (one line on ``err``; JSON on ``out`` too) and return its exit code."""
    if as_json:
        print(json.dumps(failure.as_dict()), file=out, flush=True)
    print(failure.line(prog), file=err, flush=True)
    return int(failure.exit_code)


def run(
    prog: str,
    body: Callable[[], int],
    *,
    as_json: Callable[[], bool],
    out: TextIO,
    err: TextIO,
    translate: Callable[[BaseException], Failure | None] = lambda _: None,
    traceback_wanted: bool = False,
) -> int:
    """Run a command's ``body`` inside the boundary; return the exit code.

    ``translate`` maps the exceptions of the command's own libraries (aiohttp,
    redis …) to failures that name the address; ``as_json`` is asked only
    when something failed (the flags may not have been parsed yet). Under the
    test suite the process starts measuring its coverage here (:mod:`edge.measure`).
    """
    measure.start_if_asked(os.environ)
    try:
        return body()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=err, flush=True)
        return 130
    except Exception as exc:
        if traceback_wanted:
            traceback.print_exc(file=err)
        failure = exc if isinstance(exc, Failure) else translate(exc) or describe(exc)
        return emit(prog, failure, as_json=as_json(), out=out, err=err)
