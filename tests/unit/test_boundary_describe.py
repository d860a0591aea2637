"""edge.boundary: an exception no command translated still gets its documented exit code.

The exit scale is one contract for every Pinhole command (edge/boundary.py's docstring,
README "Exit codes"): 3 cannot reach, 5 trust, 2 a file named wrongly, 1 anything else,
130 Ctrl-C outside a call. Each branch of :func:`describe` is pinned here, with the line a
user sees and its hint, and :func:`run`'s handling of Ctrl-C and ``PINHOLE_TRACEBACK=1``.
"""

from __future__ import annotations

import errno
import io
import json
import ssl

import pytest

from edge.boundary import ExitCode, Failure, describe, run, traceback_wanted


def _cert_error() -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError("certificate verify failed")
    exc.verify_message = "self-signed certificate in certificate chain"
    return exc


@pytest.mark.parametrize(("exc", "exit_code", "code", "words"), [
    (_cert_error(), ExitCode.TRUST, "tls_verify", "self-signed certificate"),
    (ssl.SSLError("wrong version number"), ExitCode.TRUST, "tls", "TLS failed"),
    (TimeoutError(), ExitCode.NO_CLOUD, "timeout", "nothing answered"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "stack.json"),
     ExitCode.USAGE, "file", "stack.json: no such file or directory"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), ExitCode.NO_CLOUD,
     "unreachable", "connection refused"),
    (OSError(errno.ENETUNREACH, "Network is unreachable"), ExitCode.OTHER, "os_error",
     "network is unreachable"),
    (OSError("no errno at all"), ExitCode.OTHER, "os_error", "no errno at all"),
    (ValueError("odd"), ExitCode.OTHER, "internal", "unexpected ValueError: odd"),
])
def test_each_kind_of_exception_gets_its_exit_code_and_a_hint(
        exc: BaseException, exit_code: ExitCode, code: str, words: str) -> None:
    failure = describe(exc)
    assert (failure.exit_code, failure.code) == (exit_code, code)
    assert words in failure.message and failure.hint  # what happened; what to do next


def test_a_failure_is_passed_through_unchanged() -> None:
    failure = Failure(ExitCode.NO_MEDIA, "no_media", "no node reachable", "open UDP 5004")
    assert describe(failure) is failure


def test_run_prints_one_line_and_json_and_returns_the_exit_code() -> None:
    out, err = io.StringIO(), io.StringIO()

    def body() -> int:
        raise TimeoutError

    assert run("pinhole", body, as_json=lambda: True, out=out, err=err) == ExitCode.NO_CLOUD
    assert err.getvalue().startswith("pinhole: timed out: nothing answered; check the")
    assert "Traceback" not in err.getvalue()
    assert json.loads(out.getvalue())["error"]["code"] == "timeout"


def test_ctrl_c_outside_a_call_is_130_and_says_interrupted() -> None:
    out, err = io.StringIO(), io.StringIO()

    def body() -> int:
        raise KeyboardInterrupt

    assert run("pinhole", body, as_json=lambda: False, out=out, err=err) == 130
    assert err.getvalue() == "pinhole: interrupted\n" and out.getvalue() == ""


def test_pinhole_traceback_1_prints_the_traceback_for_a_bug_report() -> None:
    assert traceback_wanted({"PINHOLE_TRACEBACK": "1"})
    assert not traceback_wanted({"PINHOLE_TRACEBACK": "0"}) and not traceback_wanted({})
    out, err = io.StringIO(), io.StringIO()

    def body() -> int:
        raise ValueError("odd")

    code = run("pinhole", body, as_json=lambda: False, out=out, err=err,
               traceback_wanted=True)
    assert code == ExitCode.OTHER
    assert "Traceback (most recent call last)" in err.getvalue()
    assert err.getvalue().rstrip().endswith("this is a bug in Pinhole; PINHOLE_TRACEBACK=1 "
                                            "shows where")
