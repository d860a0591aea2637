"""No package imports itself in a circle.

Defect: ``cloud.store`` imported ``cloud.redis_store`` (inside ``open_store``),
which imported ``cloud.store``, ``cloud.node_bus`` and ``cloud.redis_errors``,
which imported ``cloud.store`` again: four modules that could only be read
together. The graph below is built from the source with :mod:`ast`: every
``import`` between two modules of one package, at the top of a module or
inside a function (a late import hides a cycle, it does not remove one), but
not those under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("wire", "edge", "cloud", "client", "media_node", "hybrid_node", "lab")

# Packages whose cycles are known and not yet asserted, each with why. Empty: every
# package above is held to an acyclic graph.
ALLOWED_CYCLES: Mapping[str, str] = {}


def _module_name(package: str, path: Path) -> str:
    parts = path.relative_to(ROOT / package).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((package, *parts))


def _under_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _under_type_checking(node):
            for child in node.orelse:
                yield from _import_nodes(child)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _import_nodes(node)


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom,
             known: set[str]) -> set[str]:
    """The modules of ``known`` that ``node`` (in ``module``) imports."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = module.split(".")
            anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
            base = ".".join([*anchor, *([base] if base else [])])
        names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
    found = set()
    for name in names:
        while name and name not in known:  # ``import a.b.c`` reads a.b.c (or its parent)
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> modules of the same package it imports (not itself, nor the package's
    ``__init__`` for a submodule: that one runs first whatever imports what)."""
    files = {_module_name(package, p): p for p in (ROOT / package).rglob("*.py")}
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        edges: set[str] = set()
        for node in _import_nodes(tree):
            edges |= _targets(module, path.name == "__init__.py", node, known)
        graph[module] = {m for m in edges if m != module and not module.startswith(m + ".")}
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_has_no_import_cycle(package: str) -> None:
    """Each package's modules import one another without a circle."""
    found = cycles(import_graph(package))
    if package in ALLOWED_CYCLES:
        pytest.skip(f"{package} has known cycles {found}: {ALLOWED_CYCLES[package]}")
    assert found == [], f"{package} imports in a circle: {found}"


def test_finder_sees_a_late_import_cycle(tmp_path: Path) -> None:
    """The check can fail: an import inside a function closes a circle."""
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert cycles(graph) == [["p.a", "p.b", "p.c"]]
    source = ast.parse("def f():\n    from p.b import x\n"
                       "if TYPE_CHECKING:\n    from p.c import y\n")
    targets = set().union(*(_targets("p.a", False, n, {"p.a", "p.b", "p.c"})
                            for n in _import_nodes(source)))
    assert targets == {"p.b"}


def test_relative_imports_resolve() -> None:
    """``from . import x`` and ``from .x import y`` name modules of the same package."""
    known = {"p", "p.a", "p.b", "p.sub", "p.sub.c"}
    relative = ast.parse("from . import b\nfrom .sub.c import z\nfrom .. import a\n")
    nodes = list(_import_nodes(relative))
    assert _targets("p.a", False, nodes[0], known) == {"p", "p.b"}
    assert _targets("p.a", False, nodes[1], known) == {"p.sub.c"}
    assert _targets("p.sub.c", False, nodes[2], known) == {"p", "p.a"}
