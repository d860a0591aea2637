"""API bodies (docs/design.md "Cloud API"): bounded, strict, and secrets never printed."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr, TypeAdapter, ValidationError

from wire.models import (
    CloudToNode,
    DeviceRegistration,
    IceCredentials,
    ProbePolicy,
    ReachabilityReport,
    validation_detail,
)


def test_probe_policy_defaults_to_the_seeds_two_hours() -> None:
    """Seed: 'The probing data cache expiry is set to 2 hours.'"""
    assert ProbePolicy().ttl_s == 7200
    assert ProbePolicy().transports == ["udp", "tcp", "tls"]


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        DeviceRegistration.model_validate({"org": "a", "enrollment_key": "k", "admin": True})


def test_lists_are_bounded() -> None:
    result = {"node_id": "n", "rung": "udp/5004", "reachable": True, "rtt_ms": 1.0}
    with pytest.raises(ValidationError, match="at most 4096 items"):
        ReachabilityReport.model_validate({"results": [result] * 4097})


def test_secrets_serialise_but_never_print() -> None:
    ice = IceCredentials(node_ufrag="abcd", client_ufrag="efgh",
                         pwd=SecretStr("s3cret+pwd+xyz+0123456"))
    assert "s3cret" not in repr(ice) and "s3cret" not in str(ice)
    assert '"pwd":"s3cret+pwd+xyz+0123456"' in ice.model_dump_json()
    assert IceCredentials.model_validate_json(ice.model_dump_json()) == ice


# ----------------------------------------------------------------- control messages
KEY30 = base64.b64encode(bytes(range(30))).decode()
KEY28 = base64.b64encode(bytes(range(28))).decode()


def _open_cascade(profile: str, up: str, down: str) -> dict[str, object]:
    node = {"id": "peer", "kind": "cloud", "region": "r", "address": "192.0.2.1",
            "endpoints": [{"rung": "udp/5004", "transport": "udp", "port": 5004}]}
    return {"type": "open_cascade", "meeting_id": "m1", "peer": node, "leg_id": "c1",
            "ice": {"node_ufrag": "abcd", "client_ufrag": "efgh", "pwd": "p" * 24},
            "srtp": {"profile": profile, "client_to_node": up, "node_to_client": down}}


@pytest.mark.parametrize(("profile", "up", "message"), [
    ("AES_CM_128_HMAC_SHA1_80", "%%not-base64%%", "client_to_node: SRTP key is not valid base64"),
    ("AES_CM_128_HMAC_SHA1_80", KEY28, "client_to_node: AES_CM_128_HMAC_SHA1_80 expected 30"),
    ("AEAD_AES_128_GCM", KEY30, "client_to_node: AEAD_AES_128_GCM expected 28"),
])
def test_srtp_keys_are_checked_per_profile_at_the_model(profile: str, up: str,
                                                        message: str) -> None:
    """Defect: an open_cascade with bad base64, a wrong length, or a GCM profile with a 30-byte
    key raised from the engine and the node exited. RFC 3711 §8.2 (30 bytes), RFC 7714 §12
    (28 bytes): the model refuses it, so it never reaches the engine."""
    down = KEY28 if profile == "AEAD_AES_128_GCM" else KEY30
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(CloudToNode).validate_python(_open_cascade(profile, up, down))
    detail = validation_detail(caught.value)
    assert message in detail
    assert up not in detail and down not in detail  # the detail never quotes a key


def test_well_formed_keys_pass_for_each_profile() -> None:
    TypeAdapter(CloudToNode).validate_python(_open_cascade("AES_CM_128_HMAC_SHA1_80", KEY30,
                                                           KEY30))
    TypeAdapter(CloudToNode).validate_python(_open_cascade("AEAD_AES_128_GCM", KEY28, KEY28))


def test_ice_credentials_are_bounded() -> None:
    """RFC 8445 §5.3: ufrags of ice-chars (never ':', the USERNAME separator); passwords of
    at least 128 bits and at most 256 characters."""
    with pytest.raises(ValidationError, match="client_ufrag"):
        IceCredentials.model_validate({"node_ufrag": "abcd", "client_ufrag": "ab:cd",
                                       "pwd": "p" * 24})
    with pytest.raises(ValidationError, match="pwd"):
        IceCredentials.model_validate({"node_ufrag": "abcd", "client_ufrag": "abcd",
                                       "pwd": "short"})
