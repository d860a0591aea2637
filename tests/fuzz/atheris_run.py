"""One coverage-guided fuzz target under atheris (libFuzzer): ``python -m tests.fuzz.atheris_run
TARGET [libFuzzer flags] [CORPUS_DIR ...]``. Run by ``python -m tests.fuzz``, one per target."""

from __future__ import annotations

import sys

import atheris

#: Targets that parse in the client's code. Only they instrument it: instrumenting the
#: client for every target made each start a second slower, and the suite's short run of
#: every target outlived its timeout beside a busy loop on each core.
CLIENT_TARGETS = {"cache_files", "stack_json"}
_CLIENT = ["client", "edge"] if sys.argv[1:2] and sys.argv[1] in CLIENT_TARGETS else []

with atheris.instrument_imports(include=["wire", "media_node", "cloud", *_CLIENT]):
    from tests.fuzz.targets import TARGETS


def main() -> None:
    name = sys.argv[1]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
