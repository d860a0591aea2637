"""wire/ is the sans-I/O core: no asyncio, sockets or HTTP stack
(docs/design.md, "Code conventions")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WIRE = Path(__file__).resolve().parents[2] / "wire"
FORBIDDEN = {"asyncio", "socket", "selectors", "aiohttp", "uvloop", "redis", "threading"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("path", sorted(WIRE.glob("*.py")), ids=lambda p: p.name)
def test_wire_module_does_no_io(path: Path) -> None:
    """No module of wire/ imports an I/O or event-loop library."""
    assert not (_imports(path) & FORBIDDEN), f"{path.name} imports {_imports(path) & FORBIDDEN}"


def test_checker_sees_an_asyncio_import(tmp_path: Path) -> None:
    """The check above can fail: it finds both import forms."""
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio.tasks\nfrom socket import socket\n")
    assert _imports(bad) & FORBIDDEN == {"asyncio", "socket"}
