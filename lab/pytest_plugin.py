"""Pinhole's pytest plugin: test your client's fallback paths behind real firewall profiles.

Installed with Pinhole (the ``pytest11`` entry point ``pinhole``); ``-p no:pinhole``
turns it off. Fixtures (docs/testing-your-client.md):

- ``pinhole_stack`` — a loopback stack (cloud, three media nodes), no root;
- ``pinhole_lab`` — the firewall lab (root): the stack behind an enterprise network whose
  gateway runs a firewall profile, ``open`` unless the test asks for another with
  ``@pytest.mark.pinhole_profile("no-udp")`` or indirect parametrization
  (``@pytest.mark.parametrize("pinhole_lab", ["open", "tls-only"], indirect=True)``).

Each is one stack per test module (the ``*_module`` fixtures), so a module's tests share
its start-up; each test gets it with the profile it asked for, and the clients it started
are killed when it ends. Everything is stopped and removed when the module ends, also
after a failure or Ctrl-C. Without root ``pinhole_lab`` (and the ``pinhole_root`` marker)
skips with the reason; under ``CI=true`` it fails instead, so a CI run never passes by
skipping. The plugin imports Pinhole only when a fixture is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from lab.fixture import Pinhole

ROOT_REASON = ("Pinhole's firewall lab needs root (network namespaces, nftables): run the "
               "tests as root, or use the pinhole_stack fixture (loopback, no firewall)")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_root() -> None:
    """Skip without root, with the reason; fail instead under ``CI=true``."""
    if os.geteuid() == 0:
        return
    if in_ci():
        pytest.fail(f"prerequisite missing under CI=true: {ROOT_REASON}", pytrace=False)
    pytest.skip(ROOT_REASON)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "pinhole_profile(name): the firewall profile pinhole_lab gives this test "
        "(open, udp-5004, udp-33434, no-udp, tls-only, proxy-only, …; default open)")
    config.addinivalue_line(
        "markers", "pinhole_root: needs root (Pinhole's firewall lab): skipped without it, "
        "failed under CI=true")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("pinhole_root") is not None:
        require_root()


@pytest.fixture(scope="module")
def pinhole_stack_module() -> Iterator[Pinhole]:
    """One loopback stack for the test module."""
    from lab.fixture import loopback

    with loopback() as pinhole:
        yield pinhole


@pytest.fixture
def pinhole_stack(pinhole_stack_module: Pinhole) -> Iterator[Pinhole]:
    """The module's loopback stack; the clients this test started are killed at its end."""
    yield pinhole_stack_module
    pinhole_stack_module.end_clients()


@pytest.fixture(scope="module")
def pinhole_lab_module() -> Iterator[Pinhole]:
    """One firewall lab for the test module (root)."""
    require_root()
    from lab.fixture import enterprise

    with enterprise("open") as pinhole:
        yield pinhole


@pytest.fixture
def pinhole_lab(request: pytest.FixtureRequest, pinhole_lab_module: Pinhole
                ) -> Iterator[Pinhole]:
    """The module's firewall lab with this test's profile: the indirect parameter, else the
    ``pinhole_profile`` marker, else ``open``. Clients it started are killed at its end."""
    marker = request.node.get_closest_marker("pinhole_profile")
    profile = getattr(request, "param", None) or (marker.args[0] if marker else "open")
    pinhole_lab_module.use_profile(str(profile))
    yield pinhole_lab_module
    pinhole_lab_module.end_clients()
