"""The order ``make test`` hands files to its workers (tests/conftest.py).

xdist's default for ``--dist loadfile`` reorders files by their number of tests, most first,
so the lab and Docker files (a few tests of tens of seconds each) started last and a worker
ran one of them alone while the others sat idle: the suite's wall time was its slowest
file's tail. Heaviest first is the classic longest-processing-time rule for a makespan.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.conftest import heaviest_files_first


@dataclass(frozen=True)
class Item:
    nodeid: str
    markers: frozenset[str] = frozenset()

    def get_closest_marker(self, name: str) -> object | None:
        return name if name in self.markers else None


def test_files_go_heaviest_marker_first_and_keep_their_tests_in_order() -> None:
    items = [
        Item("tests/unit/test_a.py::one"),
        Item("tests/unit/test_a.py::two"),
        Item("tests/lab/test_b.py::one", frozenset({"lab"})),
        Item("tests/integration/test_c.py::one", frozenset({"slow"})),
        Item("tests/docker/test_d.py::one", frozenset({"docker", "slow"})),
        Item("tests/docker/test_d.py::two", frozenset({"docker", "slow"})),
    ]
    assert [i.nodeid for i in heaviest_files_first(items)] == [
        "tests/docker/test_d.py::one", "tests/docker/test_d.py::two",
        "tests/lab/test_b.py::one",
        "tests/integration/test_c.py::one",
        "tests/unit/test_a.py::one", "tests/unit/test_a.py::two",
    ]


def test_a_file_goes_with_its_heaviest_test_and_stays_whole() -> None:
    """One slow test moves its whole file forward, its light tests with it, in file order
    (some files' tests build on each other: tests/lab/test_hybrid_lab.py numbers them)."""
    items = [
        Item("tests/integration/test_x.py::quick"),
        Item("tests/integration/test_y.py::quick"),
        Item("tests/integration/test_y.py::long", frozenset({"slow"})),
        Item("tests/integration/test_y.py::quick_again"),
    ]
    assert [i.nodeid for i in heaviest_files_first(items)] == [
        "tests/integration/test_y.py::quick", "tests/integration/test_y.py::long",
        "tests/integration/test_y.py::quick_again", "tests/integration/test_x.py::quick",
    ]
