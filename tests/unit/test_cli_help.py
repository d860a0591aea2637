"""``--help`` reads like a finished tool's (defects: ``pinhole --help`` gave netcheck's exit
codes as 1/2/3 while the README and the help's own epilog said 6/4/3; a subcommand's help
had no description, repeated all 16 global flags, and showed ``±20%%`` and the internal
word "seed:")."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from client import cli
from edge.flags import subparsers
from tests.unit.test_env_names import PARSERS

ROOT = Path(__file__).resolve().parents[2]
GLOBAL_FLAGS = [a.option_strings[0] for a in cli._parser()._actions
                if a.option_strings and a.option_strings[0] not in ("-h", "--version")]


def _helps() -> Iterator[tuple[str, str]]:
    for make in PARSERS.values():
        parser = make()
        for each in (parser, *subparsers(parser)):
            yield each.prog, each.format_help()


def _pinhole_commands() -> dict[str, argparse.ArgumentParser]:
    return {sub.prog.split()[-1]: sub for sub in subparsers(cli._parser())}


def _readme_exit_codes() -> dict[int, str]:
    text = (ROOT / "README.md").read_text()
    return {int(code): meaning for code, meaning in
            re.findall(r"^\| (\d) \| (.+) \|$", text, flags=re.MULTILINE)}


def test_the_exit_codes_in_help_are_the_readmes() -> None:
    """Each code of the README's table is in ``pinhole --help``, with the same meaning's
    first words; netcheck's verdicts are 0/6/4/3 there and in its own help."""
    top = cli._parser().format_help()
    codes = _readme_exit_codes()
    assert sorted(codes) == list(range(7))
    for code, meaning in codes.items():
        first = re.sub(r"[`*]", "", meaning).split(":")[0].split(",")[0].split(" (")[0]
        assert re.search(rf"^  {code}  {re.escape(first)}", top, flags=re.MULTILINE), (
            code, first)
    for text in (top, _pinhole_commands()["netcheck"].format_help()):
        flat = " ".join(text.split())
        assert "1 degraded" not in flat and "2 no media path" not in flat
    netcheck = " ".join(_pinhole_commands()["netcheck"].format_help().split())
    assert "0 all good, 6 degraded" in netcheck and "4 no media path, 3 no signaling" in netcheck


def test_every_command_has_a_line_and_a_paragraph() -> None:
    top = cli._parser().format_help()
    for name, sub in _pinhole_commands().items():
        assert re.search(rf"^  {name} +\S", top, flags=re.MULTILINE), name
        assert sub.description and len(sub.description.split()) >= 8, name


def test_global_flags_appear_once_in_the_top_help_and_not_in_a_commands() -> None:
    top = cli._parser().format_help()
    for flag in GLOBAL_FLAGS:
        assert len(re.findall(rf"^  {flag}(?=[ ,\n])", top, flags=re.MULTILINE)) == 1, flag
    for name, sub in _pinhole_commands().items():
        text = sub.format_help()
        shown = [f for f in GLOBAL_FLAGS if re.search(rf"^\s+{f}(?=[ ,\n])|\[{f}[] ]", text,
                                                     flags=re.MULTILINE)]
        assert not shown, (name, shown)
        assert "see 'pinhole --help'" in text, name


def test_global_flags_still_work_after_the_command() -> None:
    args = cli._parser().parse_args(["probe", "--json", "--stack", "s.json"])
    assert args.json and args.stack == "s.json"


@pytest.mark.parametrize(("prog", "text"), list(_helps()), ids=lambda v: str(v)[:30])
def test_help_has_no_doubled_percent_and_no_internal_words(prog: str, text: str) -> None:
    assert "%%" not in text, prog
    assert "seed:" not in text.lower(), prog


def test_the_consent_interval_shows_one_percent_sign() -> None:
    call = " ".join(_pinhole_commands()["call"].format_help().split())
    assert "±20% (RFC 7675" in call
