"""Shared test plumbing: prerequisites that skip locally and fail in CI."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, reason: str) -> None:
    """Skip (outside CI) or fail (under ``CI=true``) when a prerequisite is missing.

    A skipped firewall or interop test proves nothing, so CI never skips.
    """
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def require_root() -> None:
    require(os.geteuid() == 0, "needs root (network namespaces, nftables)")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"needs {name!r} on PATH (make test installs it as root)")
    assert path is not None
    return path
