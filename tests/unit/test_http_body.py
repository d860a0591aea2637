"""cloud.http.decode_json: the one decoder for untrusted JSON bodies.

Pins down the defects of the cloud's old body reader: ``json.loads`` raised
``RecursionError`` on ``[`` × 1000 and ``{"a":`` × 5000, accepted ``NaN``
(not JSON, RFC 8259 §6), and let the escape ``"\\ud800"`` through as a lone
surrogate (RFC 8259 §8.2) that later broke the secret compare.
"""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.http import JSON_DEPTH, decode_json, nesting_depth
from wire.errors import BodyError

LIMIT = 256 * 1024


def _reason(raw: bytes, max_depth: int = JSON_DEPTH) -> str:
    with pytest.raises(BodyError) as info:
        decode_json(raw, max_bytes=LIMIT, max_depth=max_depth)
    return info.value.reason


def test_deep_nesting_is_refused_without_recursion() -> None:
    assert _reason(b"[" * 1000) == "too_deep"
    assert _reason(b'{"a":' * 5000) == "too_deep"
    assert _reason(b"[" * 100_000 + b"]" * 100_000) == "too_deep"


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"a": "[[[[{{{{" * 100, "b": ['"]]]']})
    assert nesting_depth(text) == 2
    assert decode_json(text.encode(), max_bytes=LIMIT) == json.loads(text)


def test_depth_limit_is_exact() -> None:
    assert decode_json(b"[" * 4 + b"]" * 4, max_bytes=LIMIT, max_depth=4) == [[[[]]]]
    assert _reason(b"[" * 5 + b"]" * 5, max_depth=4) == "too_deep"


def test_lone_surrogates_are_refused() -> None:
    """The defect: ``{"enrollment_key": "\\ud800"}`` reached ``str.encode`` and raised."""
    assert _reason(b'{"enrollment_key": "\\ud800"}') == "invalid_unicode"
    assert _reason(b'{"\\udfff": 1}') == "invalid_unicode"
    assert _reason(b'[["\\udc00x"]]') == "invalid_unicode"
    # a correct pair is one character
    assert decode_json(b'"\\ud83d\\ude00"', max_bytes=LIMIT) == "\U0001f600"


def test_bytes_that_are_not_utf8_or_json() -> None:
    assert _reason(b'"\xed\xa0\x80"') == "invalid_utf8"  # an encoded surrogate
    assert _reason(b"\xff") == "invalid_utf8"
    assert _reason(b"{not json") == "invalid_json"
    assert _reason(b"NaN") == "invalid_json"
    assert _reason(b'{"rtt_ms": Infinity}') == "invalid_json"
    assert _reason(b"") == "invalid_json"


def test_size_bound() -> None:
    with pytest.raises(BodyError, match="larger than 10 bytes") as info:
        decode_json(b"[" + b"1," * 10 + b"1]", max_bytes=10)
    assert info.value.reason == "too_large"


@given(st.binary(max_size=512))
def test_any_bytes_give_a_value_or_a_body_error(raw: bytes) -> None:
    with contextlib.suppress(BodyError):
        decode_json(raw, max_bytes=LIMIT)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=20,
)


@given(JSON)
def test_valid_documents_round_trip(value: object) -> None:
    raw = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    try:
        assert decode_json(raw, max_bytes=1 << 20, max_depth=64) == value
    except BodyError as exc:  # hypothesis text may hold surrogates: refused, never raised
        assert exc.reason in ("invalid_unicode", "invalid_utf8")
