"""Bad numbers are refused at the edge, exit 2 with one line (defects: ``pinhole call
--seconds -1`` or ``nan`` joined, then said "unexpected ValidationError … this is a bug in
Pinhole"; ``--seconds inf`` never ended; ``pinhole-media-node --capacity -5`` bound its
ports, then retried registration for ever). An unknown meeting says how to get one
(defect: its hint was "the message says what it wants")."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from client import cli
from client.api import ApiError
from client.failures import Context, translate
from edge.boundary import ExitCode, Failure
from edge.flags import Number, apply_environment, subparsers
from media_node import __main__ as node_main
from tests.unit.test_env_names import PARSERS

NOT_NUMBERS = ("nan", "inf", "-inf", "-1", "1e400", "ten")


def _numeric_flags() -> Iterator[tuple[str, argparse.ArgumentParser, argparse.Action]]:
    for make in PARSERS.values():
        parser = make()
        for each in (parser, *subparsers(parser)):
            for action in each._actions:
                if action.option_strings and action.type is not None:
                    yield each.prog, each, action


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "0", "86401"])
def test_call_seconds_out_of_range_is_a_usage_error(
        value: str, capsys: pytest.CaptureFixture[str]) -> None:
    """No cloud is needed: the flag is refused before anything connects."""
    code = cli.main(["--cloud", "https://127.0.0.1:9", "--org", "o", "--enrollment-key", "k",
                     "call", "--meeting", "m", "--seconds", value])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE, err
    assert err.count("\n") == 1 and "--seconds" in err and "86400" in err, err
    assert "bug" not in err and "Traceback" not in err


def test_call_seconds_from_the_environment_is_checked_too(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PINHOLE_SECONDS", "nan")
    assert cli.main(["call", "--meeting", "m"]) == ExitCode.USAGE
    assert "PINHOLE_SECONDS='nan'" in capsys.readouterr().err


@pytest.mark.parametrize("capacity", ["-5", "0", "nan"])
def test_media_node_capacity_must_be_positive(
        capacity: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 2 before binding or registering, naming the flag and the range."""
    code = node_main.main(["--cloud", "https://127.0.0.1:9", "--capacity", capacity])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE, err
    assert "--capacity" in err and "a whole number from 1" in err, err


def test_every_numeric_flag_is_bounded() -> None:
    """No flag of any command takes a bare int or float: each is a edge.flags.Number (or a
    Path, a string parser of its own), so none lets NaN, infinity or a negative through."""
    bare = [(prog, action.option_strings[0]) for prog, _, action in _numeric_flags()
            if action.type in (int, float)]
    assert not bare


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_every_numeric_flag_refuses_what_is_not_a_finite_number_in_range(value: str) -> None:
    for prog, parser, action in _numeric_flags():
        if not isinstance(action.type, Number):
            continue
        flag = action.option_strings[0]
        with pytest.raises(Failure) as caught:
            parser.parse_args([flag, value, *_required(parser, action)])
        assert caught.value.exit_code == ExitCode.USAGE, (prog, flag)
        assert flag in caught.value.message, (prog, flag)
        name = "PINHOLE_" + max((s for s in action.option_strings if s.startswith("--")),
                                key=len)[2:].upper().replace("-", "_")
        with pytest.raises(Failure):
            apply_environment(parser, {name: value})


def _required(parser: argparse.ArgumentParser, skip: argparse.Action) -> list[str]:
    """Values for the parser's other required flags and positionals, so only one is bad."""
    argv: list[str] = []
    for action in parser._actions:
        if action is skip or isinstance(action, argparse._SubParsersAction):
            continue
        if not action.option_strings and action.choices:
            argv.append(str(next(iter(action.choices))))
        elif action.required:
            argv += [action.option_strings[0], "x"]
    return argv


def test_an_unknown_meeting_says_how_to_get_one() -> None:
    failure = translate(ApiError(404, "not_found", "no meeting mtg-nope"), Context())
    assert failure is not None and failure.exit_code == ExitCode.USAGE
    assert "mtg-nope" in failure.message
    assert "pinhole meeting create" in failure.hint and "check the id" in failure.hint
