"""The test suite's coverage measurement of the processes it starts (``make test``).

``PINHOLE_COVERAGE`` names coverage.py's configuration file; a Pinhole program started
with it set measures its own lines from its entry point on: :func:`edge.boundary.run`,
which every command passes through, calls :func:`start_if_asked` before the command's
body. Unset (every run but the suite's), nothing happens and coverage.py is not imported.

Not coverage.py's own start-up hook (``COVERAGE_PROCESS_START``, which the suite keeps for
its own processes): that hook starts with the interpreter, and Python 3.11's tracer then
runs every import of aiohttp, pydantic and cryptography traced, about a quarter more CPU
per process for the hundreds of services a run starts. The lines a module runs when it is
imported are measured in the test processes, which import every module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, MutableMapping
from types import ModuleType

VARIABLE = "PINHOLE_COVERAGE"


def _coverage() -> ModuleType | None:
    try:
        return importlib.import_module("coverage")
    except ImportError:  # a deployment without the test extras: nothing to measure with
        return None


def start_if_asked(environ: MutableMapping[str, str],
                   load: Callable[[], ModuleType | None] = _coverage) -> bool:
    """Start measuring this process (``environ``: its environment) if it asks for it and the
    process is not measured yet; True when it was started here. ``load`` gives coverage.py."""
    config = environ.get(VARIABLE)
    if not config:
        return False
    coverage = load()
    if coverage is None or coverage.Coverage.current() is not None:  # a test process is
        return False
    # coverage.py's start-up call reads its configuration from this variable; it is set
    # only for the call, so that a program this one starts measures itself the same way
    saved = environ.get("COVERAGE_PROCESS_START")
    environ["COVERAGE_PROCESS_START"] = config
    try:
        return coverage.process_startup() is not None
    finally:
        if saved is None:
            del environ["COVERAGE_PROCESS_START"]
        else:
            environ["COVERAGE_PROCESS_START"] = saved
