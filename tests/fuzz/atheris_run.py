"""One coverage-guided fuzz target under atheris (libFuzzer): ``python -m tests.fuzz.atheris_run
TARGET [libFuzzer flags] [CORPUS_DIR ...]``. Run by ``python -m tests.fuzz``, one per target."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["wire", "edge", "media_node", "cloud", "client"]):
    from tests.fuzz.targets import TARGETS


def main() -> None:
    name = sys.argv[1]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
