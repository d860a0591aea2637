"""The settings layer of every command (edge.flags): every flag of every command and
subcommand reads PINHOLE_<FLAG> (the README's claim, untrue before for the client's
subcommand flags, --json, --no-cache …); global flags work after the command
("pinhole probe --force-probe" was rejected); --help shows defaults and no reST markup;
--version answers."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from client import cli
from cloud import settings as cloud_settings
from edge.boundary import ExitCode, Failure
from edge.flags import apply_environment, env_name
from lab import __main__ as lab_main
from lab import firewall, turn_service
from media_node import settings as node_settings

PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "pinhole": cli._parser,
    "pinhole-cloud": cloud_settings.parser,
    "pinhole-media-node": node_settings.parser,
    "pinhole-lab": lab_main._parser,
    "pinhole-lab firewall": firewall.parser,
    "pinhole-lab turn": turn_service.parser,
}


def _sample(action: argparse.Action) -> tuple[str, object]:
    """A raw environment value for ``action`` and the value the parse must yield."""
    if isinstance(action, argparse._StoreTrueAction):
        return "1", True
    if isinstance(action, argparse._StoreFalseAction):
        return "1", False
    if isinstance(action, argparse._AppendAction):
        return "a,b", ["a", "b"]
    if action.choices is not None:
        choice = next(c for c in action.choices if c != action.default)
        return str(choice), choice
    kind = getattr(action.type, "kind", action.type)  # edge.flags.Number: a bounded number
    if kind is int:
        return "7", 7
    if kind is float:
        return "7.5", 7.5
    if action.type is Path:
        return "/from/env", Path("/from/env")
    return "from-env", "from-env"


def _positionals(parser: argparse.ArgumentParser) -> list[str]:
    return [str(next(iter(a.choices))) for a in parser._actions
            if not a.option_strings and a.choices is not None
            and not isinstance(a, argparse._SubParsersAction)]


def _commands(parser: argparse.ArgumentParser, prefix: list[str]
              ) -> Iterator[tuple[argparse.ArgumentParser, list[str]]]:
    """Each (sub)command and the argv that parses it (a command's first subcommand too)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    first = [next(iter(subs[0].choices))] if subs else []
    yield parser, prefix + _positionals(parser) + first
    for action in subs:
        for name, sub in action.choices.items():
            yield from _commands(sub, [*prefix, name])


def _cases() -> Iterator[tuple[str, list[str], str]]:
    for prog, make in PARSERS.items():
        for sub, argv in _commands(make(), []):
            for action in sub._actions:
                name = env_name(action)
                if name is not None and action.default is not argparse.SUPPRESS:
                    yield prog, argv, action.dest


CASES = list(_cases())


def test_the_walk_sees_every_command() -> None:
    progs = {prog for prog, _, _ in CASES}
    assert progs == set(PARSERS) and len(CASES) > 90


@pytest.mark.parametrize(("prog", "argv", "dest"), CASES,
                         ids=[f"{p} {' '.join(a)} {d}" for p, a, d in CASES])
def test_every_flag_reads_its_variable(prog: str, argv: list[str], dest: str) -> None:
    parser = PARSERS[prog]()
    target = None
    required: list[str] = []
    for sub, sub_argv in _commands(parser, []):
        if sub_argv != argv:
            continue
        for action in sub._actions:
            if action.dest == dest and env_name(action) is not None \
                    and action.default is not argparse.SUPPRESS:
                target = action
            elif action.required and action.option_strings:
                required += [action.option_strings[-1], str(_sample(action)[0])]
    assert target is not None
    name = env_name(target)
    assert name is not None
    raw, expected = _sample(target)
    apply_environment(parser, {name: raw})
    namespace = parser.parse_args(argv + required)
    assert getattr(namespace, dest) == expected, name


def test_global_flags_work_after_the_command() -> None:
    """Where a user types them: "pinhole probe --force-probe" was an error."""
    after = cli._parser().parse_args(["probe", "--force-probe", "--json", "--cloud", "https://c"])
    assert (after.force_probe, after.json, after.cloud) == (True, True, "https://c")
    before = cli._parser().parse_args(["--cloud", "https://c", "--force-probe", "probe"])
    assert (before.force_probe, before.json, before.cloud) == (True, False, "https://c")


def test_a_bad_value_is_a_usage_failure_naming_the_variable() -> None:
    parser = cli._parser()
    with pytest.raises(Failure) as caught:
        apply_environment(parser, {"PINHOLE_PROFILE": "laptop"})
    assert caught.value.exit_code == ExitCode.USAGE and "PINHOLE_PROFILE" in caught.value.message
    with pytest.raises(Failure) as caught:
        parser.parse_args(["call"])  # --meeting is required
    assert caught.value.exit_code == ExitCode.USAGE and "--meeting" in caught.value.message


@pytest.mark.parametrize("prog", PARSERS)
def test_help_shows_defaults_and_no_markup(prog: str) -> None:
    for sub, _ in _commands(PARSERS[prog](), []):
        text = sub.format_help()
        assert "``" not in text and ":class:" not in text, sub.prog
        assert "env PINHOLE_" in text or not any(
            env_name(a) and a.help != argparse.SUPPRESS for a in sub._actions), sub.prog
    if prog == "pinhole":
        call = next(sub for sub, argv in _commands(cli._parser(), []) if argv == ["call"])
        assert "default: 5.0" in call.format_help()


@pytest.mark.parametrize("prog", PARSERS)
def test_version(prog: str, capsys: pytest.CaptureFixture[str]) -> None:
    if prog == "pinhole-lab firewall":
        return  # a subcommand: pinhole-lab --version answers for it
    with pytest.raises(SystemExit) as caught:
        PARSERS[prog]().parse_args(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith(prog + " ")


def test_json_numbers_are_rounded() -> None:
    """The issue saw 91.18200000000002 in --json output: every float is rounded."""
    assert cli.rounded({"a": [91.18200000000002, {"b": 0.1 + 0.2}], "c": 1, "d": None}) == \
        {"a": [91.182, {"b": 0.3}], "c": 1, "d": None}


@pytest.mark.parametrize(("prog", "variable"), [
    ("pinhole", "PINHOLE_ENROLLMENT_KEY"), ("pinhole", "PINHOLE_PROXY_PASSWORD"),
    ("pinhole-cloud", "PINHOLE_NODE_SECRET"), ("pinhole-cloud", "PINHOLE_TOKEN_KEY"),
    ("pinhole-media-node", "PINHOLE_NODE_SECRET"),
])
def test_help_never_shows_a_secret_from_the_environment(prog: str, variable: str) -> None:
    """Defaults in --help come from PINHOLE_* too: a secret there must not be printed."""
    parser = PARSERS[prog]()
    apply_environment(parser, {variable: "hunter2-secret"})
    text = " ".join(parser.format_help().split())
    assert "hunter2" not in text and "default: set (hidden)" in text
