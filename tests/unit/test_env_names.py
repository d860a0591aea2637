"""One environment variable, one meaning (defect: ``PINHOLE_PROFILE`` was the firewall's
profile for compose and the lab and the device's profile for ``pinhole``, so exporting
``PINHOLE_PROFILE=no-udp`` as the README showed for docker made every later ``pinhole``
command exit 2; ``PINHOLE_STACK`` and ``PINHOLE_PROXY`` were a path or URL for ``pinhole``
and a yes/no for ``pinhole-lab netns``). Every name any command, compose file or test
reads is listed once in docs/design.md's table, with every command that reads it."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from client import cli
from cloud import settings as cloud_settings
from edge.boundary import Failure
from edge.flags import apply_environment, env_name, subparsers
from hybrid_node import reflector
from hybrid_node import settings as hybrid_settings
from lab import __main__ as lab_main
from lab import firewall, turn_service
from media_node import settings as node_settings

ROOT = Path(__file__).resolve().parents[2]
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "pinhole": cli._parser,
    "pinhole-cloud": cloud_settings.parser,
    "pinhole-media-node": node_settings.parser,
    "pinhole-hybrid-node": hybrid_settings.build_parser,
    "pinhole-hybrid-node reflector": reflector.build_parser,
    "pinhole-lab": lab_main._parser,
    "pinhole-lab firewall": firewall.parser,
    "pinhole-lab turn": turn_service.parser,
}
NAME = re.compile(r"\bPINHOLE_[A-Z0-9]+(?:_[A-Z0-9]+)*\b")
#: the docs' example of the naming rule, not a variable anything reads
EXAMPLES = {"PINHOLE_SOME_FLAG"}
#: where a variable can be read or set: the packages, the tests, compose and the images
SOURCES = ("wire", "edge", "client", "cloud", "media_node", "hybrid_node", "lab", "bench", "tests")
DEPLOYMENT = ("docker-compose.yml", "docker-compose.hybrid.yml", "docker-compose.scale.yml",
              "Dockerfile", "docker")


def _readers() -> Iterator[tuple[str, str, argparse.Action]]:
    """(variable, command that reads it, its flag) for every flag of every command."""
    for top, make in PARSERS.items():
        parser = make()
        for each in (parser, *subparsers(parser)):
            for action in each._actions:
                name = env_name(action)
                if name is not None and action.default is not argparse.SUPPRESS:
                    yield name, each.prog if each is not parser else top, action


def _kind(action: argparse.Action) -> tuple[str, str, tuple[str, ...]]:
    """What a flag's value is: a yes/no, a list or a value; its type; its choices."""
    shape = ("yes/no" if isinstance(action, (argparse._StoreTrueAction,
                                             argparse._StoreFalseAction))
             else "list" if isinstance(action, argparse._AppendAction) else "value")
    kind = getattr(action.type, "kind", action.type)
    type_name = getattr(kind, "__name__", "str") if kind is not None else "str"
    return shape, type_name, tuple(map(str, action.choices or ()))


def _table() -> dict[str, tuple[str, str]]:
    """docs/design.md's table of variables: name -> (read by, meaning)."""
    text = (ROOT / "docs" / "design.md").read_text()
    section = text.split("### Environment variables", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        match = re.fullmatch(r"\| `(PINHOLE_[A-Z0-9_]+)` \| (.+?) \| (.+) \|", line.strip())
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} has two rows"
            rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


def _names_in_files() -> dict[str, set[str]]:
    """Every PINHOLE_* name the code, the tests, compose and the images mention."""
    found: dict[str, set[str]] = {}
    files = [p for top in SOURCES for p in (ROOT / top).rglob("*.py")]
    for entry in DEPLOYMENT:
        path = ROOT / entry
        files += [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    for path in files:
        if "__pycache__" in path.parts or path.suffix in (".so", ".whl"):
            continue
        for name in NAME.findall(path.read_text(errors="replace")):
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return {name: where for name, where in found.items() if name not in EXAMPLES}


def test_no_variable_is_read_in_two_senses() -> None:
    """A name two commands read must be the same kind of value for both (same shape, type
    and choices): before, PINHOLE_PROFILE had the device profiles for one and the firewall
    profiles for another, and PINHOLE_STACK was a file for one and a yes/no for another."""
    seen: dict[str, dict[tuple[str, str, tuple[str, ...]], set[str]]] = {}
    for name, prog, action in _readers():
        seen.setdefault(name, {}).setdefault(_kind(action), set()).add(prog)
    clashes = {name: kinds for name, kinds in seen.items() if len(kinds) > 1}
    assert not clashes, clashes


def test_the_design_table_lists_every_variable_once_with_its_readers() -> None:
    rows = _table()
    for name, prog, _ in _readers():
        assert name in rows, f"{name} (read by {prog}) is missing from docs/design.md"
        assert f"`{prog}`" in rows[name][0], f"{name}: the table does not say {prog} reads it"
    missing = {name: sorted(where) for name, where in _names_in_files().items()
               if name not in rows}
    assert not missing, f"not in docs/design.md's table: {missing}"


def test_the_design_table_names_nothing_that_is_gone() -> None:
    """A row for a name nothing reads any more would be a second, stale meaning."""
    used = set(_names_in_files()) | {name for name, _, _ in _readers()}
    assert not set(_table()) - used


@pytest.mark.parametrize("line", [
    line for line in (ROOT / "README.md").read_text().splitlines()
    if "docker compose" in line and re.search(r"\bPINHOLE_\w+=", line)])
def test_what_the_readme_exports_for_compose_leaves_pinhole_working(line: str) -> None:
    """Defect: ``PINHOLE_PROFILE=no-udp docker compose up`` as the README showed, exported,
    made every later ``pinhole`` command exit 2. What the README sets for compose must be
    names ``pinhole`` does not read (or reads in the same sense)."""
    exported = dict(re.findall(r"\b(PINHOLE_\w+)=(\S+)", line))
    for make in (cli._parser, lab_main._parser):
        try:
            apply_environment(make(), exported)
        except Failure as exc:  # pragma: no cover - the failure message is the report
            pytest.fail(f"{line!r}: {exc.message}")
    assert not set(exported) & {name for name, prog, _ in _readers()
                                if prog.startswith("pinhole ") or prog == "pinhole"}
