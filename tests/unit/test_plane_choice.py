"""Which data plane a node runs, and why: the compiled one is an optional accelerator.

As aiohttp, yarl and msgpack do with theirs: the extension may be missing (built
without a C compiler) and the node still runs, on the Python plane;
``PINHOLE_NO_EXTENSIONS=1`` asks for Python; the compiled plane is refused, loudly, when
pylibsrtp's libsrtp is not of the type it calls it as (libsrtp 3 changes
``srtp_protect``'s arguments: calling it the old way would corrupt memory). The choice
is logged and in ``/metrics``. One module imports the extension.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge.admission import Admission, ConnectionLimits
from media_node.engine import Engine
from media_node.metrics import registry_for, render
from media_node.plane import (
    MAX_DATAGRAM,
    MAX_PORTS,
    SRTP_SIGNATURES,
    PlaneKind,
    PlaneReason,
    load_plane,
    python_plane,
    srtp_signatures,
)
from tests.integration.planes import compiled

ROOT = Path(__file__).resolve().parents[2]
#: libsrtp 3's srtp_protect (srtp.h): the packet in and out as separate buffers
LIBSRTP3_PROTECT = ("srtp_err_status_t(*)(struct srtp_ctx_t_ *, const uint8_t *, size_t, "
                    "uint8_t *, size_t *)")


def test_the_environment_switch_asks_for_the_python_plane() -> None:
    plane = load_plane({"PINHOLE_NO_EXTENSIONS": "1"})
    assert (plane.kind, plane.reason) == (PlaneKind.PYTHON, PlaneReason.ASKED)
    for off in ("", "0"):
        compiled()  # where the extension is built, unset or 0 keeps it
        assert load_plane({"PINHOLE_NO_EXTENSIONS": off}).kind is PlaneKind.COMPILED


def test_this_install_declares_libsrtp_as_the_compiled_plane_calls_it() -> None:
    """The check is live: pylibsrtp's cffi types are the ones _plane.c's ``srtp_call`` is."""
    assert srtp_signatures() == dict(SRTP_SIGNATURES)


def test_another_libsrtp_signature_falls_back_to_python_loudly(
        caplog: pytest.LogCaptureFixture) -> None:
    """Defect pinned down: libsrtp's functions were cast to the plane's type unchecked,
    and pylibsrtp had no upper bound. A libsrtp whose ``srtp_protect`` takes other
    arguments (injected here as found) now gets the Python plane, a warning that names
    the function, and ``reason="srtp_mismatch"`` in /metrics."""
    found = {**SRTP_SIGNATURES, "srtp_protect": LIBSRTP3_PROTECT}
    with caplog.at_level(logging.WARNING, logger="media_node.plane"):
        plane = load_plane({}, found)
    assert (plane.kind, plane.reason) == (PlaneKind.PYTHON, PlaneReason.SRTP_MISMATCH)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "srtp_protect" in record.getMessage() and "size_t" in record.getMessage()
    engine = Engine("node-t", plane=plane)
    text = render(registry_for(engine, Admission.within(ConnectionLimits()),
                               lambda: True)).decode()
    assert 'pinhole_node_plane_info{plane="python",reason="srtp_mismatch"} 1.0' in text
    assert "pinhole_node_plane_relayed_total 0.0" in text


def test_metrics_name_the_plane_that_relays() -> None:
    engine = Engine("node-t", plane=python_plane())
    text = render(registry_for(engine, Admission.within(ConnectionLimits()),
                               lambda: True)).decode()
    assert 'pinhole_node_plane_info{plane="python",reason="asked"} 1.0' in text


def test_without_the_extension_the_node_imports_and_runs_on_python() -> None:
    """``import media_node`` and everything the node starts works with no ``.so``
    (``None`` in ``sys.modules`` makes the import fail as a missing file does)."""
    code = ("import sys; sys.modules['media_node._plane'] = None\n"
            "import media_node, media_node.service, media_node.listeners\n"
            "from media_node.plane import load_plane\n"
            "plane = load_plane({})\n"
            "print(plane.kind, plane.reason)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["python", "not_built"]
    assert "data plane: Python, not compiled" in run.stderr  # said, as a warning


def test_one_module_imports_the_extension() -> None:
    """The seam: the engine, the listeners and everything else reach the plane through
    ``media_node.plane`` only."""
    pattern = re.compile(r"^\s*(from\s+media_node\s+import\s+.*\b_plane\b|"
                         r"(from|import)\s+media_node\._plane\b)", re.MULTILINE)
    importers = sorted(
        str(path.relative_to(ROOT)) for top in ("wire", "edge", "cloud", "client",
                                                "media_node", "hybrid_node", "lab", "bench")
        for path in (ROOT / top).rglob("*.py") if pattern.search(path.read_text()))
    assert importers == ["media_node/plane.py"]


def test_both_planes_read_and_serve_alike() -> None:
    core = compiled().core
    from media_node import _plane  # the extension's constants, read here only

    assert (_plane.MAX_DATAGRAM, _plane.MAX_PORTS) == (MAX_DATAGRAM, MAX_PORTS)
    assert core.routes == 0
