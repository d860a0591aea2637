"""The stack's secrets can be typed as the flags that take them.

Defect pinned down: ``secrets.token_urlsafe`` starts one secret in 64 with ``-``; given
as ``pinhole --enrollment-key -Xy… register`` argparse read the key as a missing value
and the command exited 2 ("expected one argument"). It failed a suite run whose stack
drew such a key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from client.cli import main
from lab.pki import flag_safe_token, write_pki


def test_a_token_starting_with_a_dash_is_drawn_again() -> None:
    drawn: Iterator[str] = iter(["-abc", "--de", "fgh"])
    assert flag_safe_token(16, lambda n: next(drawn)) == "fgh"


def test_a_key_starting_with_a_dash_is_not_a_flag_value(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Why it matters: the same command line with the two kinds of key."""
    args = ["--cloud", "https://127.0.0.1:1", "--org", "acme", "--no-cache", "register"]
    assert main(["--enrollment-key", "-Xy0", *args]) == 2
    assert "--enrollment-key: expected one argument" in capsys.readouterr().err


def test_every_secret_of_a_new_pki_is_flag_safe(tmp_path: Path) -> None:
    for n in range(40):  # 40 PKIs: 200 secrets, 96 % odds of a dash among plain tokens
        pki = write_pki(tmp_path / str(n), ["127.0.0.1"])
        assert not any(s.startswith("-") for s in (
            pki.enrollment_key, pki.node_secret, pki.other_enrollment_key,
            pki.operator_token_file.read_text(), pki.turn_secret_file.read_text()))
