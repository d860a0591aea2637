"""The ``control_from_cloud`` fuzz target (media_node.control)."""

from __future__ import annotations

import contextlib

from pydantic import ValidationError

from media_node.control import _from_cloud as from_cloud
from media_node.engine import Engine
from wire.models import AllocateLeg


def control_from_cloud(data: bytes) -> None:
    """media_node.control: a cloud command validates or is a ValidationError; an
    allocate_leg that validates never makes the engine raise (bad keys: ok false)."""
    command: object = None
    with contextlib.suppress(ValidationError):
        command = from_cloud.validate_json(data)
    node = Engine("fuzz-node", stun_rate=0)
    if isinstance(command, AllocateLeg):
        node.allocate(command, 0.0)
    # the keys and credentials of a valid command, taken from the input
    text = data.decode("latin-1")
    half = len(text) // 2
    with contextlib.suppress(ValidationError):
        fuzzed = AllocateLeg.model_validate({
            "request_id": "r", "leg_id": "leg-x", "meeting_id": "m", "participant_id": "p",
            "ssrc": len(data), "ice": {"node_ufrag": "node" + text[:8], "client_ufrag": "cli0",
                                       "pwd": "p" * 22},
            "srtp": {"profile": "AEAD_AES_128_GCM" if len(data) % 2 else
                     "AES_CM_128_HMAC_SHA1_80", "client_to_node": text[:half],
                     "node_to_client": text[half:]}})
        answer = node.allocate(fuzzed, 0.0)
        assert answer.leg_id == "leg-x"
