"""API bodies (docs/design.md "Cloud API"): bounded, strict, and secrets never printed."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from wire.models import DeviceRegistration, IceCredentials, ProbePolicy, ReachabilityReport


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
    ice = IceCredentials(node_ufrag="abcd", client_ufrag="efgh", pwd=SecretStr("s3cret-pwd-xyz"))
    assert "s3cret" not in repr(ice) and "s3cret" not in str(ice)
    assert '"pwd":"s3cret-pwd-xyz"' in ice.model_dump_json()
    assert IceCredentials.model_validate_json(ice.model_dump_json()) == ice
