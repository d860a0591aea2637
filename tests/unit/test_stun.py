"""wire.stun: RFC 5769 vectors both ways, every validator outcome, and no crash on any input."""

from __future__ import annotations

import struct

import pytest
from aioice import stun as aioice_stun
from hypothesis import given
from hypothesis import strategies as st

from tests.vectors import rfc5769 as v
from wire.address import Address
from wire.stun import (
    Attr,
    Class,
    Method,
    Verdict,
    build_discovery_probe,
    build_discovery_response,
    build_error_response,
    build_leg_binding,
    build_leg_binding_response,
    encode_message,
    is_stun,
    parse_binding_response,
    transaction_id_of,
    validate_request,
    xor_address_value,
)

PWD = b"leg-password-0123456789"


def lookup(ufrag: str) -> bytes | None:
    return {"evtj": v.PASSWORD, "node": PWD}.get(ufrag)


# ----------------------------------------------------------------------------- RFC 5769


def test_rfc5769_request_parses_and_verifies() -> None:
    """RFC 5769 §2.1: attributes, MESSAGE-INTEGRITY and FINGERPRINT of the sample request."""
    message = aioice_stun.parse_message(v.SAMPLE_REQUEST)  # checks FINGERPRINT
    assert message.attributes["SOFTWARE"] == v.REQUEST_SOFTWARE
    assert message.attributes["USERNAME"] == v.REQUEST_USERNAME
    assert message.attributes["PRIORITY"] == v.REQUEST_PRIORITY
    assert message.check_message_integrity(v.PASSWORD)
    result = validate_request(v.SAMPLE_REQUEST, lookup)
    assert (result.verdict, result.node_ufrag, result.client_ufrag) == (
        Verdict.AUTHENTICATED, "evtj", "h6vY")


def test_rfc5769_request_rebuilt_byte_exact() -> None:
    """RFC 5769 §2.1 rebuilt from its parts, 0x20 padding, MESSAGE-INTEGRITY and FINGERPRINT."""
    built = encode_message(
        Method.BINDING, Class.REQUEST, v.TRANSACTION_ID,
        [(Attr.SOFTWARE, v.REQUEST_SOFTWARE.encode()),
         (Attr.PRIORITY, struct.pack("!I", v.REQUEST_PRIORITY)),
         (Attr.ICE_CONTROLLED, v.REQUEST_ICE_CONTROLLED),
         (Attr.USERNAME, v.REQUEST_USERNAME.encode())],
        integrity_key=v.PASSWORD, padding=b" ",
    )
    assert built == v.SAMPLE_REQUEST


def test_rfc5769_ipv4_response_both_ways() -> None:
    """RFC 5769 §2.2: parsed (mapped 192.0.2.1:32853, integrity) and rebuilt byte-exact."""
    result = parse_binding_response(v.SAMPLE_IPV4_RESPONSE, pwd=v.PASSWORD)
    assert result.mapped == Address(*v.IPV4_MAPPED)
    assert result.software == v.RESPONSE_SOFTWARE
    built = encode_message(
        Method.BINDING, Class.SUCCESS, v.TRANSACTION_ID,
        [(Attr.SOFTWARE, v.RESPONSE_SOFTWARE.encode()),
         (Attr.XOR_MAPPED_ADDRESS, xor_address_value(v.IPV4_MAPPED, v.TRANSACTION_ID))],
        integrity_key=v.PASSWORD, padding=b" ",
    )
    assert built == v.SAMPLE_IPV4_RESPONSE


def test_rfc5769_ipv6_response_both_ways() -> None:
    """RFC 5769 §2.3: the IPv6 address is XORed with cookie and transaction id."""
    result = parse_binding_response(v.SAMPLE_IPV6_RESPONSE, pwd=v.PASSWORD)
    assert result.mapped == Address(*v.IPV6_MAPPED)
    built = encode_message(
        Method.BINDING, Class.SUCCESS, v.TRANSACTION_ID,
        [(Attr.SOFTWARE, v.RESPONSE_SOFTWARE.encode()),
         (Attr.XOR_MAPPED_ADDRESS, xor_address_value(v.IPV6_MAPPED, v.TRANSACTION_ID))],
        integrity_key=v.PASSWORD, padding=b" ",
    )
    assert built == v.SAMPLE_IPV6_RESPONSE


def test_rfc5769_response_with_wrong_password_is_refused() -> None:
    """RFC 5389 §10.1.3: a response whose MESSAGE-INTEGRITY fails is not accepted."""
    from wire.errors import StunError

    with pytest.raises(StunError, match=r"^STUN response MESSAGE-INTEGRITY does not verify$"):
        parse_binding_response(v.SAMPLE_IPV4_RESPONSE, pwd=b"wrong")


# ----------------------------------------------------------------------------- encoder vs aioice


@given(
    txid=st.binary(min_size=12, max_size=12),
    username=st.text(min_size=1, max_size=40),
    software=st.text(max_size=30),
    key=st.binary(min_size=1, max_size=40),
    port=st.integers(1, 65535),
    ip=st.ip_addresses().map(str),
)
def test_encoder_matches_aioice(txid: bytes, username: str, software: str, key: bytes,
                                port: int, ip: str) -> None:
    """Our hand encoder is byte-identical to aioice's Message for zero padding (DESIGN perf)."""
    message = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class.RESPONSE, txid)
    message.attributes["USERNAME"] = username
    message.attributes["SOFTWARE"] = software
    message.attributes["XOR-MAPPED-ADDRESS"] = (ip, port)
    message.add_message_integrity(key)
    ours = encode_message(
        Method.BINDING, Class.SUCCESS, txid,
        [(Attr.USERNAME, username.encode()), (Attr.SOFTWARE, software.encode()),
         (Attr.XOR_MAPPED_ADDRESS, xor_address_value((ip, port), txid))],
        integrity_key=key,
    )
    assert ours == bytes(message)


# ----------------------------------------------------------------------------- builders


def test_discovery_round_trip() -> None:
    """DESIGN "Discovery probe": FINGERPRINT only; the answer carries the mapped address."""
    probe = build_discovery_probe()
    assert is_stun(probe) and len(probe) == 28
    result = validate_request(probe, lookup)
    assert result.verdict is Verdict.DISCOVERY
    reply = build_discovery_response(transaction_id_of(probe), Address("198.51.100.1", 4000),
                                     "node-x")
    assert reply is not None
    answer = parse_binding_response(reply)
    assert answer.transaction_id == transaction_id_of(probe)
    assert answer.mapped == Address("198.51.100.1", 4000) and answer.software == "node-x"


def test_leg_binding_round_trip() -> None:
    """DESIGN "Media leg": USERNAME node:client, MESSAGE-INTEGRITY keyed by pwd."""
    request = build_leg_binding("node", "client", PWD, priority=7)
    result = validate_request(request, lookup)
    assert result.verdict is Verdict.AUTHENTICATED and result.pwd == PWD
    reply = build_leg_binding_response(transaction_id_of(request), Address("::1", 9), PWD, "n")
    assert parse_binding_response(reply, pwd=PWD).mapped == Address("::1", 9)


# ----------------------------------------------------------------------------- validator


def _req(attributes: list[tuple[int, bytes]], *, key: bytes | None = None,
         cls: int = Class.REQUEST, method: int = Method.BINDING,
         fingerprint: bool = True) -> bytes:
    return encode_message(method, cls, b"T" * 12, attributes, integrity_key=key,
                          fingerprint=fingerprint)


def _error_code(reply: bytes | None) -> int:
    assert reply is not None
    error = parse_binding_response(reply).error
    assert error is not None
    return error[0]


def test_not_stun_is_ignored() -> None:
    """RFC 5389 §6: first two bits zero and the magic cookie, else it is not STUN."""
    good = build_discovery_probe()
    for bad in (b"", good[:19], b"\x80" + good[1:], good[:4] + b"\x00\x00\x00\x00" + good[8:]):
        assert validate_request(bad, lookup).verdict is Verdict.IGNORED
        assert validate_request(bad, lookup).reason == "not_stun"


def test_indications_and_responses_get_no_answer() -> None:
    """RFC 5389 §7.3: indications are never answered; a server discards responses."""
    indication = _req([], cls=Class.INDICATION)
    assert validate_request(indication, lookup).reason == "indication"
    for cls in (Class.SUCCESS, Class.ERROR):
        result = validate_request(_req([], cls=cls), lookup)
        assert (result.verdict, result.reason, result.reply) == (Verdict.IGNORED, "response",
                                                                   None)


def test_bad_fingerprint_is_silently_discarded() -> None:
    """RFC 5389 §7.3: a FINGERPRINT that does not match means "not STUN": discard."""
    probe = bytearray(build_discovery_probe())
    probe[-1] ^= 1
    result = validate_request(bytes(probe), lookup)
    assert (result.verdict, result.reason, result.reply) == (Verdict.IGNORED,
                                                               "bad_fingerprint", None)


def test_wrong_length_and_overrun_are_400() -> None:
    """RFC 5389 §7.3: a malformed request gets 400."""
    probe = build_discovery_probe()
    short_length = probe[:2] + b"\x00\x04" + probe[4:]
    assert _error_code(validate_request(short_length, lookup).reply) == 400
    overrun = _req([], fingerprint=False)[:2] + b"\x00\x08" + _req([], fingerprint=False)[4:] \
        + struct.pack("!HH", Attr.SOFTWARE, 40) + b"abcd"
    result = validate_request(overrun, lookup)
    assert (result.verdict, result.reason) == (Verdict.REJECTED, "malformed")
    assert _error_code(result.reply) == 400


def test_unknown_comprehension_required_attribute_is_420_with_the_list() -> None:
    """RFC 5389 §7.3.1 and §15.9: 420 listing every unknown attribute below 0x8000."""
    request = _req([(0x07AD, b"1234"), (0x000C, b"\x40\x00\x00\x00"), (0x7FFF, bytes(4)),
                    (0x8000, bytes(4))])
    result = validate_request(request, lookup)
    assert (result.verdict, result.reason) == (Verdict.REJECTED, "unknown_attribute")
    assert result.reply is not None and _error_code(result.reply) == 420
    body = result.reply[20:]
    pos = 0
    unknown = b""
    while pos < len(body):
        kind, length = struct.unpack_from("!HH", body, pos)
        if kind == Attr.UNKNOWN_ATTRIBUTES:
            unknown = body[pos + 4:pos + 4 + length]
        pos += 4 + length + (-length % 4)
    assert unknown == bytes.fromhex("07ad7fff")


def test_unknown_comprehension_optional_attribute_is_ignored() -> None:
    """RFC 5389 §7.3: comprehension-optional attributes (≥ 0x8000) are ignored."""
    assert validate_request(_req([(0xC001, b"x")]), lookup).verdict is Verdict.DISCOVERY


def test_username_without_integrity_is_400_and_integrity_without_username_too() -> None:
    """RFC 5389 §10.1.2: either USERNAME or MESSAGE-INTEGRITY missing → 400."""
    only_user = _req([(Attr.USERNAME, b"node:client")])
    only_mi = _req([], key=PWD)
    for request in (only_user, only_mi):
        result = validate_request(request, lookup)
        assert (result.verdict, result.reason) == (Verdict.REJECTED, "no_integrity")
        assert _error_code(result.reply) == 400


def test_unknown_username_is_401() -> None:
    """RFC 5389 §10.1.2: a USERNAME without a known credential → 401, no integrity on it."""
    for username in ("nobody:client", "no-colon", ":"):
        request = _req([(Attr.USERNAME, username.encode())], key=PWD)
        result = validate_request(request, lookup)
        assert (result.verdict, result.reason) == (Verdict.REJECTED, "unknown_username")
        assert _error_code(result.reply) == 401
        assert result.reply is not None
        assert "MESSAGE-INTEGRITY" not in aioice_stun.parse_message(result.reply).attributes


def test_bad_integrity_is_401() -> None:
    """RFC 5389 §10.1.2: MESSAGE-INTEGRITY that does not verify → 401."""
    request = build_leg_binding("node", "client", b"not-the-password")
    result = validate_request(request, lookup)
    assert (result.verdict, result.reason) == (Verdict.REJECTED, "bad_integrity")
    assert _error_code(result.reply) == 401


def test_other_methods_are_400() -> None:
    """Pinhole nodes serve Binding only; an Allocate (TURN) is refused, not ignored."""
    result = validate_request(_req([], method=0x003), lookup)
    assert (result.verdict, result.reason) == (Verdict.REJECTED, "malformed")
    assert _error_code(result.reply) == 400


def test_error_response_builder_has_the_code() -> None:
    """RFC 5389 §15.6: class (hundreds) and number encode the code."""
    reply = build_error_response(b"x" * 12, 420, "Unknown Attribute", unknown=[0x1234])
    assert parse_binding_response(reply).error == (420, "Unknown Attribute")


# ----------------------------------------------------------------------------- robustness


@given(st.binary(max_size=200))
def test_validator_never_raises_on_random_bytes(data: bytes) -> None:
    """DESIGN: bad input from the network is answered or dropped, never a crash."""
    validate_request(data, lookup)


@given(st.integers(0, 200), st.integers(0, 255))
def test_validator_never_raises_on_mutated_requests(index: int, value: int) -> None:
    request = bytearray(v.SAMPLE_REQUEST)
    request[index % len(request)] = value
    result = validate_request(bytes(request), lookup)
    if result.verdict is Verdict.AUTHENTICATED:
        # everything up to MESSAGE-INTEGRITY's end is covered by the HMAC; a mangled FINGERPRINT
        # type becomes an attribute after MESSAGE-INTEGRITY, which RFC 5389 §15.4 ignores
        assert bytes(request[:100]) == v.SAMPLE_REQUEST[:100]


@given(st.binary(min_size=20, max_size=120))
def test_error_replies_are_at_most_twice_the_request(data: bytes) -> None:
    """No amplification: an answer to an unauthenticated request is at most 2× its size."""
    header = struct.pack("!HH", 0x0001, len(data) - 20 + (-len(data) % 4)) \
        + b"\x21\x12\xa4\x42" + data[8:20]
    request = header + data[20:] + bytes(-len(data) % 4)
    result = validate_request(request, lookup, software="a-rather-long-node-name-0123456789")
    if result.reply is not None:
        assert len(result.reply) <= 2 * len(request)


@pytest.mark.parametrize("software", [None, "n", "node-with-a-long-name-0123456789"])
def test_discovery_response_fits_twice_the_request(software: str | None) -> None:
    """No amplification: SOFTWARE, then FINGERPRINT, give way to the 2× bound."""
    for request_length, mapped in ((20, ("192.0.2.1", 1)), (28, ("192.0.2.1", 1)),
                                   (28, ("2001:db8::1", 1))):
        reply = build_discovery_response(b"x" * 12, mapped, software,
                                         max_length=2 * request_length)
        assert reply is not None and len(reply) <= 2 * request_length
        assert parse_binding_response(reply).mapped == Address(*mapped)
    full = build_discovery_response(b"x" * 12, ("192.0.2.1", 1), "n", max_length=None)
    assert full is not None and parse_binding_response(full).software == "n"
