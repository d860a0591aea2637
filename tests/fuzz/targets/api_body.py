"""The ``api_body`` fuzz target (cloud.http, cloud.openapi)."""

from __future__ import annotations

import contextlib
import json
from typing import Final

from pydantic import BaseModel, ValidationError

from cloud.http import decode_json
from cloud.openapi import OPERATIONS
from wire.errors import BodyError

_BODIES: Final[tuple[type[BaseModel], ...]] = tuple(
    op.request for op in OPERATIONS if op.request is not None)


def api_body(data: bytes) -> None:
    """The cloud's body reader and every request model: BodyError or ValidationError only."""
    try:
        value = decode_json(data, max_bytes=256 * 1024)
    except BodyError:
        return
    # what was accepted is JSON (no NaN) and valid Unicode (no lone surrogate)
    json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    model = _BODIES[len(data) % len(_BODIES)]
    with contextlib.suppress(ValidationError):
        model.model_validate(value)
