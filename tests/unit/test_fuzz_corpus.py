"""Replay of the fuzz corpus and of every saved crash through its target (``make fuzz``).

A crash found by the fuzzer is saved under ``tests/fuzz/crashes/<target>-*``
and stays here as a regression test; the corpus (inputs that reached new
code in earlier runs) is replayed too, so a change that breaks a parser on
any of them fails the suite without a fuzzing run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.seeds import SEEDS
from tests.fuzz.targets import TARGETS

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"


def _target_of(name: str) -> str:
    for target in sorted(TARGETS, key=len, reverse=True):
        if name.startswith(target + "-"):
            return target
    raise KeyError(name)


CRASHES = sorted((FUZZ / "crashes").glob("*-*"))


def test_every_saved_crash_names_its_target() -> None:
    for path in CRASHES:
        assert _target_of(path.name) in TARGETS, path.name


@pytest.mark.parametrize("path", CRASHES, ids=[p.name for p in CRASHES])
def test_saved_crashes_do_not_crash_again(path: Path) -> None:
    TARGETS[_target_of(path.name)](path.read_bytes())


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_corpus_and_the_seeds_replay_cleanly(target: str) -> None:
    inputs = [f.read_bytes() for f in sorted((FUZZ / "corpus" / target).glob("*"))]
    for data in inputs + SEEDS[target]:
        TARGETS[target](data)


def test_the_old_body_reader_crashes_on_the_saved_inputs() -> None:
    """The crashes are real: ``json.loads`` (the old reader) failed on them."""
    import json

    for name, error in (("api_body-deep-object", RecursionError),
                        ("api_body-deep-array", RecursionError)):
        with pytest.raises(error):
            json.loads((FUZZ / "crashes" / name).read_bytes())
    value = json.loads((FUZZ / "crashes" / "api_body-lone-surrogate").read_bytes())
    with pytest.raises(UnicodeEncodeError):
        value["enrollment_key"].encode()
