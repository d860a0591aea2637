"""The repository explains itself: every reference to a design document resolves inside it.

Pins down the defect that modules, the README and docs/architecture.md cited a design
file outside the repository (the contracts' upper-case name) that its users cannot see.
Now the design lives in ``docs/design.md``; every ``docs/…`` path named in code or docs
must exist, every section a reference quotes (``docs/design.md "Media leg"``) must be in
that page, and every relative Markdown link must resolve.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = {".venv", ".git", "run", ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules"}
SUFFIXES = {".py", ".md", ".toml", ".yml", ".yaml", ".cfg", ".txt", ".nft", ".conf", ".html"}
# Built from parts so that this file does not name what it forbids.
_UP, _SHARED = "\\.\\.", "shared"
OUTSIDE = re.compile(rf"\b{'DES' + 'IGN'}\.md\b|\b{'STY' + 'LE'}\.md\b|{_UP}/{_SHARED}\b|"
                     rf"\b{_SHARED}/seeds\b")
DOC_PATH = re.compile(r"\bdocs/[A-Za-z0-9_./-]*[A-Za-z0-9_]")
SECTION = re.compile(r'docs/design\.md(?:\'s)?,?:? "([^"]+)"')
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _files() -> list[Path]:
    """The repository's text files, this test's own (its examples) left out."""
    names = {"Makefile", "Dockerfile"}
    return sorted(
        p for p in ROOT.rglob("*")
        if p.is_file() and not SKIP.intersection(p.relative_to(ROOT).parts)
        and (p.suffix in SUFFIXES or p.name in names) and p.name != Path(__file__).name
    )


def test_nothing_points_outside_the_repository() -> None:
    """No reference to the contracts' or the style guide's files outside the repository:
    documents a reader of the repo cannot open."""
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _files()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert offenders == []


def test_every_docs_path_named_in_code_or_docs_exists() -> None:
    missing = []
    for path in _files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for ref in DOC_PATH.findall(line):
                target = ROOT / ref
                if not (target.exists() or any(ROOT.glob(ref))):
                    missing.append(f"{path.relative_to(ROOT)}:{number}: {ref}")
    assert missing == []


def test_every_quoted_design_section_is_in_the_design() -> None:
    """``docs/design.md "Media leg"`` must name words that docs/design.md really has."""
    design = " ".join((ROOT / "docs" / "design.md").read_text().split()).lower()
    missing = []
    for path in _files():
        text = " ".join(path.read_text(errors="replace").split())
        for section in SECTION.findall(text):
            if section.lower() not in design:
                missing.append(f"{path.relative_to(ROOT)}: {section!r}")
    assert missing == []


def test_relative_markdown_links_resolve() -> None:
    missing = []
    for path in _files():
        if path.suffix != ".md":
            continue
        for target in LINK.findall(path.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).exists():
                missing.append(f"{path.relative_to(ROOT)}: {target}")
    assert missing == []


def test_the_checks_can_fail() -> None:
    assert OUTSIDE.search('see ' + 'DESIGN' + '.md "Ports"')
    assert OUTSIDE.search(".." + "/shared/seeds")
    assert DOC_PATH.findall("(docs/labs/99-none.md).") == ["docs/labs/99-none.md"]
    assert not (ROOT / "docs/labs/99-none.md").exists()
    assert SECTION.findall('latch (docs/design.md "Media leg").') == ["Media leg"]
