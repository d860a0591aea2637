"""Pinhole for tests of your own client: the public face of :mod:`lab.fixture`.

``from lab.testing import enterprise`` gives the firewall lab as a context manager; the
pytest plugin (:mod:`lab.pytest_plugin`) gives the same as the ``pinhole_stack`` and
``pinhole_lab`` fixtures. docs/testing-your-client.md shows both.
"""

from lab.fixture import (
    PROFILES,
    Client,
    Finished,
    FixtureError,
    Pinhole,
    enterprise,
    loopback,
    parse_metrics,
)

__all__ = ["PROFILES", "Client", "Finished", "FixtureError", "Pinhole", "enterprise",
           "loopback", "parse_metrics"]
