"""The ``stun`` fuzz target (wire.stun)."""

from __future__ import annotations

import contextlib

from tests.fuzz.targets import PWD
from wire.errors import StunError
from wire.stun import parse_binding_response, validate_request


def _lookup(ufrag: str) -> bytes | None:
    return PWD if ufrag == "nodeufrag" else None


def stun(data: bytes) -> None:
    """wire.stun: the server-side validator never raises; error answers stay small."""
    result = validate_request(data, _lookup, software="fuzz-node")
    if result.reply is not None:
        assert len(result.reply) <= max(2 * len(data), 20), "amplification"
    for pwd in (None, PWD):
        with contextlib.suppress(StunError):
            parse_binding_response(data, pwd=pwd)
