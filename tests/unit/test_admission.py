"""edge.admission: the connection caps both services share (no sockets)."""

from __future__ import annotations

from collections import Counter

from edge.admission import PER_SOURCE_CAP, TOTAL_CAP, Admission


def test_per_source_then_total_caps_and_their_counts() -> None:
    refusals: Counter[str] = Counter()
    gate = Admission(max_total=4, max_per_source=2, refusals=refusals)
    assert gate.admit("a") and gate.admit("a")
    assert not gate.admit("a")  # the third from one address
    assert gate.admit("b") and gate.admit("c")
    assert not gate.admit("d")  # the fifth in all
    assert refusals == {PER_SOURCE_CAP: 1, TOTAL_CAP: 1}
    assert (gate.open, gate.held_by("a")) == (4, 2)


def test_release_gives_the_slot_back_and_forgets_the_source() -> None:
    gate = Admission(max_total=1, max_per_source=1)
    assert gate.admit("a")
    gate.release("a")
    gate.release("a")  # a second release of the same connection changes nothing
    assert (gate.open, gate.held_by("a")) == (0, 0)
    assert gate.admit("b")


def test_refusals_decided_elsewhere_are_counted() -> None:
    gate = Admission(1, 1)
    gate.refuse("idle")
    gate.refuse("idle")
    assert gate.refusals == {"idle": 2}
