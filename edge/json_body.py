"""A safe JSON decoder for untrusted bodies: bounded size, bounded depth, strict UTF-8.

Python's ``json.loads`` recurses once per nesting level, so ``[`` × 1000 or
``{"a":`` × 5000 raises ``RecursionError`` from deep inside the parser; it
also accepts ``NaN``/``Infinity`` (not JSON, RFC 8259 §6) and turns the escape
``"\\ud800"`` into a lone surrogate that no UTF-8 encoder accepts later (RFC
8259 §8.2: such strings are not interoperable). :func:`decode_json` checks all
of that *before* or *without* recursion and raises one domain error,
:class:`~wire.errors.BodyError`, whose ``reason`` the HTTP edge maps to a
status; the core knows no HTTP.
"""

from __future__ import annotations

import json
import re
from typing import Final

from wire.errors import BodyError

MAX_DEPTH: Final = 32  # the deepest body any Pinhole model has is 4 levels
_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET: Final = re.compile(r"[\[\]{}]")
_OPENERS: Final = frozenset("[{")


def nesting_depth(text: str) -> int:
    """How deep the arrays and objects of ``text`` nest, strings skipped, without recursion."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match.group() in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _check_strings(value: object) -> None:
    """Raise ``BodyError`` for a string (or key) that is not valid Unicode (lone surrogates)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise BodyError("invalid_unicode",
                                    "a string holds a lone surrogate (\\ud800-\\udfff)") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def decode_json(raw: bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> object:
    """The JSON value of ``raw``; :class:`BodyError` with an exact message when it is not one.

    Reasons: ``too_large`` (more than ``max_bytes``), ``invalid_utf8``,
    ``too_deep`` (more than ``max_depth`` nested arrays/objects),
    ``invalid_json``, ``invalid_unicode`` (a lone surrogate escape).
    """
    if len(raw) > max_bytes:
        raise BodyError("too_large", f"the body is larger than {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")  # strict: also refuses encoded surrogates (ED A0 80)
    except UnicodeDecodeError:
        raise BodyError("invalid_utf8", "the body is not UTF-8") from None
    if nesting_depth(text) > max_depth:
        raise BodyError("too_deep", f"the body nests deeper than {max_depth} levels")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise BodyError("invalid_json", "the body is not valid JSON") from None
    _check_strings(value)
    return value
