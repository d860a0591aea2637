"""A CLI error says what to do next: a timeout (an OSError with no text of its own) is not
printed as a bare "pinhole: " (the proxy-only lab blocks HTTPS to the cloud this way)."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import pytest

from client import cli


def test_a_timeout_names_the_likely_cause_and_the_next_step(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def times_out(coro: Coroutine[Any, Any, Any]) -> None:
        coro.close()
        raise TimeoutError

    monkeypatch.setattr("client.cli.uvloop.run", times_out)
    assert cli.main(["--cloud", "https://198.18.0.1", "--ca", "ca.pem", "--org", "acme",
                     "--enrollment-key", "k", "register"]) == 3  # cannot reach the cloud
    err = capsys.readouterr().err
    assert "timed out" in err and "--proxy" in err and "netcheck" in err
