"""The ``control_from_node`` fuzz target (cloud.registry)."""

from __future__ import annotations

import contextlib

from pydantic import ValidationError

from cloud.registry import _from_node as from_node


def control_from_node(data: bytes) -> None:
    """cloud.registry: a node's control message validates or is a ValidationError."""
    with contextlib.suppress(ValidationError):
        from_node.validate_json(data)
