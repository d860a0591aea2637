"""Suite-wide settings: deterministic property tests in CI and a timeout on every test.

- Hypothesis: under ``CI=true`` the ``ci`` profile is loaded: derandomized (the same
  examples on every clean clone), no example database (CI clones fresh), no deadline,
  and no ``too_slow`` / ``data_too_large`` health checks, which measure the machine
  rather than the code: a fresh checkout on a busy machine failed
  ``test_encoder_matches_aioice`` that way in 9 runs of 10. Elsewhere the ``dev``
  profile keeps randomized generation and the database, without those health checks.
- Timeouts (pytest-timeout): every test gets one, by its heaviest marker, so a hang
  becomes a failure that names the test instead of a run that waits for CI's limit.
  A test's own ``@pytest.mark.timeout(N)`` wins. On expiry the run ends with the test's
  node id and every thread's stack (the hooks below): a hung event loop can swallow the
  ``signal`` method's exception and hang again in teardown.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any, Protocol, TypeVar

import aioice.ice
import pytest
from hypothesis import HealthCheck, settings

from edge import measure
from tests.prereqs import IN_CI

_MACHINE_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=_MACHINE_CHECKS,
)
settings.register_profile("dev", deadline=None, suppress_health_check=_MACHINE_CHECKS)
settings.load_profile("ci" if IN_CI else "dev")

# Seconds per test, by marker (the first that applies); generous: a hang, not a slow run.
TIMEOUTS: tuple[tuple[str, int], ...] = (
    ("docker", 1800),
    ("lab", 900),
    ("interop", 300),
    ("slow", 300),
    ("redis", 300),
)
DEFAULT_TIMEOUT = 120


def timeout_for(item: pytest.Item) -> int:
    for marker, seconds in TIMEOUTS:
        if item.get_closest_marker(marker) is not None:
            return seconds
    return DEFAULT_TIMEOUT


def pytest_configure(config: pytest.Config) -> None:
    """``make test`` sets coverage.py's start-up variable: each pytest process measures itself
    from interpreter start-up. In a process that runs tests it becomes
    :data:`edge.measure.VARIABLE`, so that the services the tests start measure themselves
    from their entry point on, past their imports (:mod:`edge.measure` says why). xdist's
    controller runs no test: it keeps the variable for the workers it starts."""
    controller = not hasattr(config, "workerinput") and bool(
        config.getoption("numprocesses", None))
    start = None if controller else os.environ.pop("COVERAGE_PROCESS_START", None)
    if start:
        os.environ[measure.VARIABLE] = start


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(timeout_for(item)))
    items[:] = heaviest_files_first(items)


class Marked(Protocol):
    """What :func:`heaviest_files_first` reads of a test item."""

    @property
    def nodeid(self) -> str: ...

    def get_closest_marker(self, name: str) -> object | None: ...


M = TypeVar("M", bound=Marked)


def heaviest_files_first(items: list[M]) -> list[M]:
    """The items, their files ordered by their heaviest marker (as :data:`TIMEOUTS`: Docker,
    then lab, interop, slow, Redis, then the rest), each file's tests kept together and in
    their own order. Under ``make test`` xdist hands out whole files in this order
    (``--dist loadfile --no-loadscope-reorder``): the longest work starts first and short
    files fill the workers' ends. xdist's own order (most tests first) left the lab and
    Docker files, a few long tests each, to start last."""
    def weight(item: M) -> int:
        return next((i for i, (marker, _) in enumerate(TIMEOUTS)
                     if item.get_closest_marker(marker) is not None), len(TIMEOUTS))

    rank: dict[str, int] = {}
    for item in items:
        path = item.nodeid.split("::")[0]
        rank[path] = min(weight(item), rank.get(path, len(TIMEOUTS)))
    order = sorted(range(len(items)), key=lambda i: (rank[items[i].nodeid.split("::")[0]], i))
    return [items[i] for i in order]


_TIMER = pytest.StashKey[threading.Timer]()


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """pytest-timeout's thread method, naming the test: a hung event loop can swallow the
    signal method's exception and hang again in teardown, so a test over its time ends
    the run with its node id and every thread's stack."""
    if not settings.timeout or settings.timeout <= 0:
        return None

    def expire() -> None:
        capture = item.config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.suspend_global_capture(in_=True)
        sys.stderr.write(f"\n+++ Timeout: {item.nodeid} ran over {settings.timeout:g} s; "
                         "every thread's stack follows +++\n")
        sys.stderr.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.write(f"+++ Timeout: {item.nodeid} +++\n")
        sys.stderr.flush()
        os._exit(1)

    timer = threading.Timer(settings.timeout, expire)
    timer.daemon = True
    timer.start()
    item.stash[_TIMER] = timer
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> bool | None:
    timer = item.stash.get(_TIMER, None)
    if timer is None:
        return None
    timer.cancel()
    return True


@pytest.fixture
def loopback_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test peer's ICE gathers its host candidate on loopback, where the stack is."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses",
                        lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    yield
