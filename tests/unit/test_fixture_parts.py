"""The parts of Pinhole's test fixture (lab/fixture.py, lab/inside.py) that need no root.

- :class:`lab.inside.LoopThread` hands a coroutine to its loop and returns its result or
  raises what it raised; a coroutine that outlives its time is cancelled (the test waits
  for the cancellation itself, not for a margin); a namespace that does not exist is a
  clear error, not a traceback from ``os.open``.
- :func:`lab.fixture.parse_metrics` reads a media node's Prometheus text.
- A loopback stack has no firewall: asking it for a profile says what to use instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.fixture import FixtureError, Pinhole, parse_metrics
from lab.inside import InsideError, LoopThread

METRICS = """\
# HELP pinhole_node_packets_total SRTP packets
# TYPE pinhole_node_packets_total counter
pinhole_node_packets_total{direction="in"} 120.0
pinhole_node_packets_total{direction="out"} 118.0
pinhole_node_drops_total{reason="auth"} 2.0
process_cpu_seconds_total 1.5
pinhole_node_legs NaN-ish
"""


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    running = LoopThread()
    yield running
    running.close()


def test_run_returns_the_result_and_raises_what_the_coroutine_raised(loop: LoopThread) -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def fails() -> None:
        raise ValueError("bad input")

    assert loop.run(answer) == 42
    with pytest.raises(ValueError, match="bad input"):
        loop.run(fails)


def test_a_coroutine_past_its_time_is_cancelled(loop: LoopThread) -> None:
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        loop.run(forever, timeout_s=0.05)
    assert cancelled.wait(timeout=30)


def test_a_missing_namespace_is_a_clear_error() -> None:
    with pytest.raises(InsideError, match="no network namespace 'pinhole-nowhere' to enter"):
        LoopThread("pinhole-nowhere")


def test_metrics_are_read_by_series() -> None:
    assert parse_metrics(METRICS) == {
        'pinhole_node_packets_total{direction="in"}': 120.0,
        'pinhole_node_packets_total{direction="out"}': 118.0,
        'pinhole_node_drops_total{reason="auth"}': 2.0,
    }


def test_a_loopback_stack_has_no_profiles(loop: LoopThread, tmp_path: Path) -> None:
    with pytest.raises(FixtureError, match="a loopback stack has no firewall: use the "
                                           "pinhole_lab fixture"):
        Pinhole(tmp_path, loop).use_profile("no-udp")
