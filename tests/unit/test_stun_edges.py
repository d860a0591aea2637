"""STUN at its boundaries: the smallest message, the last attribute, the ends of each range.

Each test pins down a mutant of ``wire/stun.py`` that survived the unit suite
(``make mutate``): an off-by-one at a boundary the RFC fixes.
"""

from __future__ import annotations

import os
import struct

import pytest

from wire.errors import StunError
from wire.stun import (
    Verdict,
    build_error_response,
    build_leg_binding,
    parse_binding_response,
    transaction_id_of,
    validate_request,
)

COOKIE = 0x2112A442


def header(message_type: int, length: int = 0, txid: bytes | None = None) -> bytes:
    return struct.pack("!HHI", message_type, length, COOKIE) + (txid or os.urandom(12))


def test_a_header_only_binding_request_is_a_valid_probe() -> None:
    """RFC 5389 §6: 20 bytes are a whole message; a Binding Request with no attributes
    is a valid (unauthenticated) probe."""
    request = header(0x0001)
    assert len(request) == 20
    assert validate_request(request, lambda _: None).verdict is Verdict.DISCOVERY
    assert transaction_id_of(request) == request[8:20]


def test_a_header_only_binding_success_parses() -> None:
    """RFC 5389 §7.3.3: a 20-byte success response is a (useless but valid) response."""
    result = parse_binding_response(header(0x0101, txid=bytes(12)))
    assert result.mapped is None and result.transaction_id == bytes(12)


def test_a_zero_length_attribute_ending_the_message_is_not_truncated() -> None:
    """RFC 5389 §15: a 4-byte attribute header with length 0 is complete."""
    request = header(0x0001, 4) + struct.pack("!HH", 0x8055, 0)  # comprehension-optional
    assert validate_request(request, lambda _: None).verdict is Verdict.DISCOVERY


@pytest.mark.parametrize("code", [300, 699])
def test_error_codes_at_both_ends_of_the_range_are_built(code: int) -> None:
    """RFC 5389 §15.6: the class is 3-6, the number 0-99: 300 through 699."""
    reply = build_error_response(bytes(12), code, "x")
    assert parse_binding_response(reply).error == (code, "x")


def test_unknown_attribute_types_up_to_0xffff_are_listed() -> None:
    """RFC 5389 §15.9: UNKNOWN-ATTRIBUTES holds 16-bit types, 0xFFFF included."""
    reply = build_error_response(bytes(12), 420, "Unknown Attribute", unknown=[0xFFFF])
    assert reply.find(b"\xff\xff") > 20


def test_priority_takes_the_whole_32_bit_range() -> None:
    """RFC 8445 §7.1.1: PRIORITY is a 32-bit unsigned integer; 0xFFFFFFFF fits."""
    request = build_leg_binding("node", "client", b"password", priority=0xFFFFFFFF)
    assert b"\xff\xff\xff\xff" in request


def test_priority_zero_is_a_priority() -> None:
    """RFC 8445 §7.1.1: 0 is a valid 32-bit priority (the lower end of the range)."""
    assert b"\x00\x24\x00\x04\x00\x00\x00\x00" in build_leg_binding("node", "client", b"pw",
                                                                   priority=0)


@pytest.mark.parametrize("code", [299, 700])
def test_error_codes_outside_the_range_are_refused(code: int) -> None:
    with pytest.raises(StunError, match=rf"^error code {code} is outside 300-699$"):
        build_error_response(bytes(12), code, "x")


def test_unknown_attribute_type_zero_is_listed() -> None:
    reply = build_error_response(bytes(12), 420, "Unknown Attribute", unknown=[0])
    assert parse_binding_response(reply).error == (420, "Unknown Attribute")
