"""The ``stack_json`` fuzz target (edge.files: ``pinhole --stack FILE``)."""

from __future__ import annotations

import contextlib

from pydantic import ValidationError

from edge.files import StackFile


def stack_json(data: bytes) -> None:
    """``pinhole --stack FILE``: stack.json validates or is a ValidationError (the CLI turns
    it into a usage error naming the file)."""
    with contextlib.suppress(ValidationError):
        StackFile.model_validate_json(data)
