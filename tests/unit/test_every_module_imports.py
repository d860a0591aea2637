"""Every module of Pinhole's packages imports on its own, and a program's module
(``__main__``, ``lab.ice`` …) can be imported without running the program.

A module only a service imports would otherwise first fail to import in the service (a
dependency dropped from pyproject.toml, an import cycle), where a test sees an exit code
at best. This is also what makes the lines a module runs when it is imported part of the
suite's coverage: the services the suite starts measure themselves from their entry point
on (edge/measure.py), after their imports.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import pkgutil

import pytest

PACKAGES = ("wire", "edge", "cloud", "client", "media_node", "hybrid_node", "lab")


def _modules() -> list[str]:
    names: list[str] = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        names.append(package)
        names += [info.name for info in pkgutil.walk_packages(root.__path__, f"{package}.")]
    return sorted(names)


MODULES = _modules()


def test_the_walk_finds_the_programs_modules() -> None:
    assert {"cloud.__main__", "media_node.__main__", "hybrid_node.__main__", "client.__main__",
            "lab.__main__", "lab.ice", "lab.smoke", "lab.health"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_a_module_imports_and_runs_nothing(name: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        module = importlib.import_module(name)
    assert module.__name__ == name
    # a program's module defines its program; importing it does not run it (python -m
    # client ran the pinhole command on import: here it exited 2 on pytest's arguments)
    assert (out.getvalue(), err.getvalue()) == ("", ""), name
