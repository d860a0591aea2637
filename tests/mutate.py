"""A small mutation run over the sans-I/O core, the relay engine, assignment and the
console's operator check.

``make mutate`` (not part of ``make test``). Each mutant changes one operator or
constant in one module (``<`` → ``<=``, ``==`` → ``!=``, ``+`` → ``-``, ``and`` →
``or``, ``not x`` → ``x``, ``n`` → ``n + 1``, ``True`` ↔ ``False``, a ``return`` of a
value → ``return None``), in a copy of the tree, and runs the unit tests that cover
that module there. A mutant that no test fails on *survives*: either a test is
missing or the mutated code does not matter. The run prints progress on stderr and a
JSON summary (killed, survived, and each survivor's file, line and change).

    python -m tests.mutate [--module wire/stun.py ...] [--limit N] [--seed S] [--json]
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Each mutated module and the unit tests that are meant to catch changes to it.
TARGETS: dict[str, tuple[str, ...]] = {
    "wire/stun.py": ("tests/unit/test_stun.py", "tests/unit/test_stun_edges.py",
                     "tests/unit/test_stun_fast_path.py"),
    "wire/multiplex.py": ("tests/unit/test_demux.py", "tests/unit/test_framing.py"),
    "wire/rtp.py": ("tests/unit/test_rtp.py", "tests/unit/test_wire_edges.py"),
    "wire/srtp.py": ("tests/unit/test_srtp.py", "tests/unit/test_wire_edges.py"),
    "wire/transports.py": ("tests/unit/test_transports.py", "tests/unit/test_assignment.py"),
    "wire/tls.py": ("tests/unit/test_tls.py",),
    "wire/models.py": ("tests/unit/test_models.py",),
    "wire/leg_client.py": ("tests/unit/test_leg_client.py", "tests/unit/test_call_legs.py"),
    "wire/ice_lite.py": ("tests/unit/test_ice_lite.py",),
    "wire/stun_transactions.py": ("tests/unit/test_stun_transactions.py",),
    "wire/tls_stream.py": ("tests/unit/test_tls_stream.py",),
    "wire/sdp.py": ("tests/unit/test_sdp.py",),
    "wire/dtls.py": ("tests/unit/test_dtls.py",),
    "wire/payload_types.py": ("tests/unit/test_payload_types.py",
                              "tests/unit/test_webrtc_leg.py"),
    "media_node/webrtc.py": ("tests/unit/test_webrtc_leg.py",),
    # the compiled plane's control: its routes run only on real sockets
    "media_node/plane.py": ("tests/unit/test_plane_ports.py", "tests/unit/test_plane_choice.py",
                            "tests/integration/test_data_plane.py"),
    # the compiled plane's Python twin: the same contract tests, on real sockets
    "media_node/python_plane.py": ("tests/integration/test_data_plane.py",
                                   "tests/integration/test_plane_contract.py"),
    "media_node/engine.py": ("tests/unit/test_engine.py", "tests/unit/test_engine_guards.py",
                             "tests/unit/test_engine_amplification.py",
                             "tests/unit/test_webrtc_leg.py"),
    "cloud/assignment.py": ("tests/unit/test_assignment.py",
                            "tests/unit/test_assignment_edges.py"),
    # the operator check: tokens, session cookies, logout and expiry, refusals counted
    "cloud/console.py": ("tests/unit/test_console_auth.py",),
}

COMPARE_SWAPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
    ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}
BINOP_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult,
    ast.Div: ast.Mult, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd, ast.LShift: ast.RShift,
    ast.RShift: ast.LShift, ast.Mod: ast.FloorDiv,
}


@dataclass(frozen=True, slots=True)
class Mutant:
    module: str
    index: int  # the n-th mutation site of the module, in walk order
    line: int
    change: str


class _Mutator(ast.NodeTransformer):
    """Counts mutation sites; applies the one numbered ``target`` (or none)."""

    def __init__(self, target: int = -1) -> None:
        self.target = target
        self.sites: list[tuple[int, str]] = []

    def _site(self, node: ast.AST, change: str) -> bool:
        self.sites.append((getattr(node, "lineno", 0), change))
        return len(self.sites) - 1 == self.target

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        for i, op in enumerate(node.ops):
            swap = COMPARE_SWAPS.get(type(op))
            if swap and self._site(node, f"{type(op).__name__} -> {swap.__name__}"):
                node.ops[i] = swap()
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        swap = BINOP_SWAPS.get(type(node.op))
        if swap and self._site(node, f"{type(node.op).__name__} -> {swap.__name__}"):
            node.op = swap()
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        other: ast.boolop = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        if self._site(node, f"{type(node.op).__name__} -> {type(other).__name__}"):
            node.op = other
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not) and self._site(node, "not x -> x"):
            return node.operand
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        value = node.value
        if isinstance(value, bool):
            if self._site(node, f"{value} -> {not value}"):
                return ast.copy_location(ast.Constant(not value), node)
        elif isinstance(value, int) and self._site(node, f"{value} -> {value + 1}"):
            return ast.copy_location(ast.Constant(value + 1), node)
        return node

    def visit_Return(self, node: ast.Return) -> ast.AST:
        self.generic_visit(node)
        if node.value is not None and not (isinstance(node.value, ast.Constant)
                                           and node.value.value is None) \
                and self._site(node, "return x -> return None"):
            node.value = None
        return node

    # Docstrings, annotations and constants in type positions are not behaviour.
    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.body = [self.visit(s) for s in _without_docstring(node.body)]
        return node

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        node.body = [self.visit(s) for s in _without_docstring(node.body)]
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        node.body = [self.visit(s) for s in _without_docstring(node.body)]
        return node


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[1:] or [ast.Pass()]
    return body


def mutants(module: str) -> Iterator[Mutant]:
    counter = _Mutator()
    counter.visit(ast.parse((ROOT / module).read_text()))
    for index, (line, change) in enumerate(counter.sites):
        yield Mutant(module, index, line, change)


def mutated_source(mutant: Mutant) -> str:
    tree = ast.parse((ROOT / mutant.module).read_text())
    tree = _Mutator(mutant.index).visit(tree)
    return ast.unparse(ast.fix_missing_locations(tree))


def killed(mutant: Mutant, workdir: Path, timeout_s: float) -> bool:
    """True when the module's tests fail (or hang) with the mutant in place."""
    target = workdir / mutant.module
    original = target.read_text()
    target.write_text(mutated_source(mutant))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
             "-p", "no:randomly", *TARGETS[mutant.module]],
            cwd=workdir, capture_output=True, timeout=timeout_s, check=False)
        return result.returncode != 0
    except subprocess.TimeoutExpired:
        return True
    finally:
        target.write_text(original)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Mutation run over wire/, the relay engine, "
                                     "assignment and the console's operator check; prints "
                                     "survivors.")
    parser.add_argument("--module", action="append", choices=sorted(TARGETS),
                        help="mutate only this module (repeatable; default: all)")
    parser.add_argument("--limit", type=int, default=0,
                        help="at most N mutants per module, sampled (default: all)")
    parser.add_argument("--seed", type=int, default=1, help="sampling seed (default: 1)")
    parser.add_argument("--timeout-s", type=float, default=120.0,
                        help="a mutant whose tests run longer is killed (default: 120)")
    parser.add_argument("--json", action="store_true", help="print only the JSON summary")
    args = parser.parse_args(argv)
    chosen: list[Mutant] = []
    rng = random.Random(args.seed)
    for module in args.module or sorted(TARGETS):
        found = list(mutants(module))
        if args.limit and len(found) > args.limit:
            found = sorted(rng.sample(found, args.limit), key=lambda m: m.index)
        chosen.extend(found)
    survivors: list[Mutant] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pinhole-mutate-") as tmp:
        workdir = Path(tmp)
        for name in ("wire", "edge", "cloud", "client", "media_node", "hybrid_node", "lab",
                     "tests"):
            shutil.copytree(ROOT / name, workdir / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "pyproject.toml", workdir / "pyproject.toml")
        for n, mutant in enumerate(chosen, start=1):
            if not killed(mutant, workdir, args.timeout_s):
                survivors.append(mutant)
            print(f"[{n}/{len(chosen)}] {mutant.module}:{mutant.line} {mutant.change}: "
                  f"{'SURVIVED' if survivors and survivors[-1] is mutant else 'killed'} "
                  f"({len(survivors)} survived so far, {time.monotonic() - started:.0f} s)",
                  file=sys.stderr, flush=True)
    summary = {"mutants": len(chosen), "killed": len(chosen) - len(survivors),
               "survived": len(survivors), "seconds": round(time.monotonic() - started),
               "survivors": [asdict(m) for m in survivors]}
    if args.json:
        print(json.dumps(summary))
    else:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
