"""The cloud's pins on a device: from the enrollment material, re-pinned only by hand
(docs/design.md "Cloud API": "never learned from a first connection"; RFC 7469 §2.4 pin syntax)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.pins import PinsError, PinStore, in_effect

A = "sha256/" + "A" * 43 + "="
B = "sha256/" + "B" * 43 + "="
C = "sha256/" + "C" * 43 + "="
CLOUD = "https://cloud.example:443"


def test_the_enrollment_material_applies_until_a_re_pin_by_hand(tmp_path: Path) -> None:
    store = PinStore(tmp_path)
    assert in_effect(CLOUD, [], store, [A, B]).pins == (A, B)
    line = store.repin(CLOUD, [C], "new-stack.json")
    assert f"re-pinned {CLOUD}" in line and C in line
    assert in_effect(CLOUD, [], store, [A, B]).pins == (C,)
    assert in_effect("https://other:443", [], store, [A]).pins == (A,)  # per cloud
    assert in_effect(CLOUD, [B], store, [A]).pins == (B,)  # --pin wins
    assert (tmp_path / "pins.log").read_text().count("re-pinned") == 1
    assert store.reset(CLOUD) is not None
    assert in_effect(CLOUD, [], store, [A, B]).pins == (A, B)
    assert in_effect(CLOUD, [], None, []).pins == ()


def test_a_malformed_pin_is_refused_with_where_it_came_from(tmp_path: Path) -> None:
    with pytest.raises(PinsError, match=r"stack\.json: 'sha256/short' is not an SPKI pin"):
        in_effect(CLOUD, [], None, ["sha256/short"])
    (tmp_path / "pins.json").write_text(json.dumps({CLOUD: {"pins": ["nope"]}}))
    with pytest.raises(PinsError, match=r"pins\.json"):
        in_effect(CLOUD, [], PinStore(tmp_path), [A])
