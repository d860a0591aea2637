"""One rung vocabulary: a rung is a :class:`wire.transports.RungName`, spelled once.

Defect: a rung was a ``str`` on ``Rung.name``, a ``Literal`` in ``wire/models.py``, a
``str`` on the node's ``Sink.rung`` and plain ``"udp"``/``"tls"`` keys in the cascade
ladders, with 27 rung strings spread over the code and two ``cast`` calls to get from
one to another; a rung misspelt in one module was only found at run time. Now
``wire/transports.py`` spells each rung once and every other module names the member
(tests still spell rungs where they check the JSON a client or the cloud writes).
"""

from __future__ import annotations

import ast
from pathlib import Path

from wire.transports import RungName

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("wire", "edge", "cloud", "client", "media_node", "hybrid_node", "lab", "bench")
#: The one module that spells the rungs.
VOCABULARY = ROOT / "wire" / "transports.py"
SPELLINGS = frozenset(r.value for r in RungName)


def rung_literals(source: str) -> list[tuple[int, str]]:
    """Each string constant of ``source`` that is a rung's name, with its line."""
    return [(node.lineno, node.value) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and node.value in SPELLINGS]


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py")
                  if p != VOCABULARY)


def test_the_packages_are_found() -> None:
    assert len(_modules()) > 50 and VOCABULARY.is_file()


def test_no_module_spells_a_rung() -> None:
    found = {str(m.relative_to(ROOT)): spelt for m in _modules()
             if (spelt := rung_literals(m.read_text(encoding="utf-8")))}
    assert not found, f"name the wire.transports.RungName member instead of: {found}"


def test_the_check_sees_a_spelt_rung_and_not_prose() -> None:
    source = ('"""Media on udp/5004."""\nA = "tls/443"\nB = f"{A} or http-proxy"\n'
              'C = ("udp", "tcp")\nD = RungName.TCP_5004\n')
    assert rung_literals(source) == [(2, "tls/443")]


def test_the_vocabulary_spells_each_rung_once() -> None:
    found = sorted(value for _, value in rung_literals(VOCABULARY.read_text(encoding="utf-8")))
    # "http-proxy" twice: the rung, and the transport of the same name
    assert found == sorted([*SPELLINGS, "http-proxy"])
