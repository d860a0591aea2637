"""Pinhole benchmarks: machine-readable figures, each compared with a peer in the same run."""

import os as _os

from edge import measure as _measure

# A benchmark the test suite runs (``python -m bench.X``) measures the Pinhole code it runs
# in-process, from here on (edge/measure.py); elsewhere this does nothing.
_measure.start_if_asked(_os.environ)
