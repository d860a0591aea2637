"""One coverage-guided fuzz target under atheris (libFuzzer): ``python -m tests.fuzz.atheris_run
TARGET [libFuzzer flags] [CORPUS_DIR ...]``. Run by ``python -m tests.fuzz``, one per target."""

from __future__ import annotations

import sys

import atheris

from tests.fuzz.targets import PACKAGES, TARGETS, Target


def load(name: str) -> Target:
    """The target, its module (and so its parser) imported under atheris's import hook, which
    instruments the target's packages. Only the target's parser is imported, and none of it
    before: the registry imports nothing of Pinhole. A target that parses in the client's
    code instruments the client (it ran blind without); instrumenting, and importing, every
    parser for each target made each start two seconds of CPU."""
    with atheris.instrument_imports(include=list(PACKAGES[name])):
        return TARGETS[name]


def main() -> None:
    name = sys.argv[1]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], load(name))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
