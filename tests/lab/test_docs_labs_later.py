"""The later half of docs/labs/, run as tests/lab/test_docs_labs.py runs the first.

Its own file so that the suite's workers share the labs (pytest-xdist gives a file's tests
to one worker; the labs take four minutes together): each lab uses its own run id, so the
two halves run side by side.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab.test_docs_labs import FIRST_HALF, LABS, check_lab

pytestmark = pytest.mark.lab
LATER = [doc for doc in LABS if doc not in FIRST_HALF]


@pytest.mark.parametrize("doc", LATER, ids=[p.stem for p in LATER])
def test_lab_commands_show_the_documented_output(doc: Path) -> None:
    check_lab(doc)

