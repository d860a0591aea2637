"""wire.stun: RFC 5769 vectors both ways, every validator outcome, and no crash on any input."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from aioice import stun as aioice_stun
from hypothesis import given
from hypothesis import strategies as st

from tests.vectors import rfc5769 as v
from wire.address import Address
from wire.errors import StunError, WireError
from wire.stun import (
    MAGIC_COOKIE,
    STUN_HEADER_LENGTH,
    Attr,
    BindingResult,
    Class,
    Method,
    Validation,
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
TXID = b"T" * 12
#: A comprehension-optional attribute that makes a request big enough for the full
#: reason phrase to fit the 2× reply bound (it is otherwise ignored).
FILLER: tuple[int, bytes] = (0xC0FF, bytes(64))


def lookup(ufrag: str) -> bytes | None:
    return {"evtj": v.PASSWORD, "node": PWD}.get(ufrag)


def _attributes(data: bytes) -> list[tuple[int, bytes]]:
    """The raw (type, value) list of a well-formed message, independent of wire.stun."""
    out: list[tuple[int, bytes]] = []
    pos = STUN_HEADER_LENGTH
    while pos < len(data):
        kind, length = struct.unpack_from("!HH", data, pos)
        out.append((kind, data[pos + 4:pos + 4 + length]))
        pos += 4 + length + (-length % 4)
    return out


def _req(attributes: list[tuple[int, bytes]], *, key: bytes | None = None,
         cls: int = Class.REQUEST, method: int = Method.BINDING,
         fingerprint: bool = True) -> bytes:
    return encode_message(method, cls, TXID, attributes, integrity_key=key,
                          fingerprint=fingerprint)


def _error(result: Validation) -> tuple[int, str]:
    assert result.verdict is Verdict.REJECTED and result.reply is not None
    assert transaction_id_of(result.reply) == result.transaction_id
    error = parse_binding_response(result.reply).error
    assert error is not None
    return error


def _reject_checks(result: Validation, reason: str, code: int) -> tuple[int, str]:
    assert (result.verdict, result.reason) == (Verdict.REJECTED, reason)
    error = _error(result)
    assert error[0] == code
    return error


# ----------------------------------------------------------------------------- RFC 5769


def test_rfc5769_request_parses_and_verifies() -> None:
    """RFC 5769 §2.1: attributes, MESSAGE-INTEGRITY and FINGERPRINT of the sample request."""
    message = aioice_stun.parse_message(v.SAMPLE_REQUEST)  # raises if FINGERPRINT is wrong
    assert message.message_method == aioice_stun.Method.BINDING
    assert message.message_class == aioice_stun.Class.REQUEST
    assert message.transaction_id == v.TRANSACTION_ID
    assert message.attributes["SOFTWARE"] == v.REQUEST_SOFTWARE
    assert message.attributes["USERNAME"] == v.REQUEST_USERNAME
    assert message.attributes["PRIORITY"] == v.REQUEST_PRIORITY
    assert message.attributes["ICE-CONTROLLED"] == int.from_bytes(v.REQUEST_ICE_CONTROLLED, "big")
    assert message.check_message_integrity(v.PASSWORD)
    assert not message.check_message_integrity(b"VOkJxbRl1RmTxUk/WvJxBT")
    assert is_stun(v.SAMPLE_REQUEST) and transaction_id_of(v.SAMPLE_REQUEST) == v.TRANSACTION_ID


def test_rfc5769_request_authenticates() -> None:
    """RFC 5769 §2.1 through the validator: RFC 5389 §10.1.2 short-term credential verifies."""
    result = validate_request(v.SAMPLE_REQUEST, lookup)
    assert (result.verdict, result.reason) == (Verdict.AUTHENTICATED, "ok")
    assert (result.node_ufrag, result.client_ufrag, result.pwd) == ("evtj", "h6vY", v.PASSWORD)
    assert result.transaction_id == v.TRANSACTION_ID and result.reply is None
    assert result.message is not None and result.message.attributes["PRIORITY"] == 0x6E0001FF


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


@pytest.mark.parametrize(
    ("sample", "mapped"),
    [(v.SAMPLE_IPV4_RESPONSE, v.IPV4_MAPPED), (v.SAMPLE_IPV6_RESPONSE, v.IPV6_MAPPED)],
    ids=["2.2-ipv4", "2.3-ipv6"],
)
def test_rfc5769_responses_both_ways(sample: bytes, mapped: Address) -> None:
    """RFC 5769 §2.2/§2.3: parsed (XOR-MAPPED-ADDRESS, integrity, fingerprint), rebuilt exact."""
    message = aioice_stun.parse_message(sample)  # raises if FINGERPRINT is wrong
    assert message.check_message_integrity(v.PASSWORD)
    assert message.attributes["XOR-MAPPED-ADDRESS"] == mapped
    result = parse_binding_response(sample, pwd=v.PASSWORD)
    assert result == BindingResult(v.TRANSACTION_ID, mapped, v.RESPONSE_SOFTWARE, None)
    built = encode_message(
        Method.BINDING, Class.SUCCESS, v.TRANSACTION_ID,
        [(Attr.SOFTWARE, v.RESPONSE_SOFTWARE.encode()),
         (Attr.XOR_MAPPED_ADDRESS, xor_address_value(mapped, v.TRANSACTION_ID))],
        integrity_key=v.PASSWORD, padding=b" ",
    )
    assert built == sample


@pytest.mark.parametrize("sample", [v.SAMPLE_IPV4_RESPONSE, v.SAMPLE_IPV6_RESPONSE])
def test_rfc5769_response_with_wrong_password_is_refused(sample: bytes) -> None:
    """RFC 5389 §10.1.3: a response whose MESSAGE-INTEGRITY fails is not accepted."""
    with pytest.raises(StunError, match=r"^STUN response MESSAGE-INTEGRITY does not verify$"):
        parse_binding_response(sample, pwd=b"wrong")


def test_rfc5769_vectors_with_a_flipped_fingerprint_bit() -> None:
    """RFC 5389 §15.5: the CRC covers the message; one flipped bit in it fails every check."""
    for sample in (v.SAMPLE_REQUEST, v.SAMPLE_IPV4_RESPONSE, v.SAMPLE_IPV6_RESPONSE):
        bad = sample[:-1] + bytes([sample[-1] ^ 0x01])
        with pytest.raises(ValueError, match="fingerprint"):
            aioice_stun.parse_message(bad)
        assert validate_request(bad, lookup).reason in ("bad_fingerprint", "response")
    bad_response = v.SAMPLE_IPV4_RESPONSE[:-1] + b"\x00"
    with pytest.raises(StunError, match=r"^STUN response FINGERPRINT does not match$"):
        parse_binding_response(bad_response)


# ----------------------------------------------------------------------------- encoder vs aioice

_ATTRIBUTE_VALUES: dict[str, Any] = {
    "USERNAME": st.text(max_size=40),
    "SOFTWARE": st.text(max_size=40),
    "PRIORITY": st.integers(0, 2**32 - 1),
    "ICE-CONTROLLING": st.integers(0, 2**64 - 1),
    "USE-CANDIDATE": st.none(),
    "ERROR-CODE": st.tuples(st.integers(300, 699), st.text(max_size=30)),
    "XOR-MAPPED-ADDRESS": st.tuples(st.ip_addresses().map(str), st.integers(0, 65535)),
    "DATA": st.binary(max_size=33),
}


def _raw_value(name: str, value: Any, txid: bytes) -> bytes:
    """The value bytes of one attribute, written without aioice."""
    if name in ("USERNAME", "SOFTWARE"):
        return str(value).encode()
    if name == "PRIORITY":
        return struct.pack("!I", value)
    if name == "ICE-CONTROLLING":
        return struct.pack("!Q", value)
    if name == "USE-CANDIDATE":
        return b""
    if name == "ERROR-CODE":
        code, reason = int(value[0]), str(value[1])
        return struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode()
    if name == "XOR-MAPPED-ADDRESS":
        return xor_address_value(value, txid)
    assert isinstance(value, bytes)
    return value


@given(
    data=st.data(),
    txid=st.binary(min_size=12, max_size=12),
    names=st.lists(st.sampled_from(sorted(_ATTRIBUTE_VALUES)), unique=True),
    cls=st.sampled_from(list(Class)),
    key=st.none() | st.binary(min_size=1, max_size=40),
)
def test_encoder_matches_aioice(data: st.DataObject, txid: bytes, names: list[str], cls: Class,
                                key: bytes | None) -> None:
    """With zero padding, encode_message is byte-identical to aioice's bytes(Message).

    Any class, any subset and order of attributes, with MESSAGE-INTEGRITY
    (aioice's add_message_integrity) or FINGERPRINT only (add_fingerprint).
    """
    values = {name: data.draw(_ATTRIBUTE_VALUES[name], label=name) for name in names}
    message = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class(int(cls)), txid,
                                  dict(values))
    if key is None:
        message.add_fingerprint()
    else:
        message.add_message_integrity(key)
    ours = encode_message(
        Method.BINDING, cls, txid,
        [(aioice_stun.ATTRIBUTES_BY_NAME[n][0], _raw_value(n, values[n], txid)) for n in names],
        integrity_key=key,
    )
    assert ours == bytes(message)
    if key is not None:
        assert aioice_stun.parse_message(ours).check_message_integrity(key)


@given(st.text(max_size=20), st.binary(min_size=1, max_size=20))
def test_padding_byte_is_ignored_by_a_parser(username: str, key: bytes) -> None:
    """RFC 5389 §15: padding "MUST be ignored by the receiver"; 0x20 parses like 0x00."""
    spaced = encode_message(Method.BINDING, Class.REQUEST, TXID,
                            [(Attr.USERNAME, username.encode())], integrity_key=key, padding=b" ")
    message = aioice_stun.parse_message(spaced)
    assert message.attributes["USERNAME"] == username
    assert message.check_message_integrity(key)


def test_encoder_refuses_what_it_cannot_encode() -> None:
    """RFC 5389 §6 (96-bit transaction id) and §15 (16-bit attribute length)."""
    with pytest.raises(StunError, match=r"^transaction id of 4 bytes, expected 12$"):
        encode_message(Method.BINDING, Class.REQUEST, b"abcd", [])
    with pytest.raises(StunError, match=r"^padding must be one byte$"):
        encode_message(Method.BINDING, Class.REQUEST, TXID, [], padding=b"")
    with pytest.raises(StunError, match=r"^attribute 0x0013 of 65536 bytes is too long$"):
        encode_message(Method.BINDING, Class.REQUEST, TXID, [(0x0013, bytes(65536))])


# ----------------------------------------------------------------------------- is_stun, txid


def test_is_stun_accepts_every_builder_and_vector() -> None:
    """RFC 5389 §6: what the builders write is STUN-shaped."""
    mapped = Address("192.0.2.7", 5004)
    for message in (
        build_discovery_probe(), build_discovery_response(TXID, mapped),
        build_leg_binding("node", "client", PWD), build_leg_binding_response(TXID, mapped, PWD),
        build_error_response(TXID, 420, "Unknown Attribute", unknown=[0x7777]),
        v.SAMPLE_REQUEST, v.SAMPLE_IPV4_RESPONSE, v.SAMPLE_IPV6_RESPONSE,
    ):
        assert message is not None and is_stun(message)


def test_is_stun_refuses_what_is_not() -> None:
    """RFC 5389 §6: 20-byte header, first two bits 0, magic cookie, 4-aligned matching length."""
    probe = build_discovery_probe()
    assert probe[4:8] == MAGIC_COOKIE.to_bytes(4, "big")
    for bad in (
        b"", probe[:19], b"\x40" + probe[1:], b"\x80" + probe[1:],
        probe[:4] + b"\x21\x12\xa4\x43" + probe[8:],
        probe + b"\x00\x00\x00\x00",  # length field says 8, there are 12
        probe[:2] + b"\x00\x09" + probe[4:] + b"\x00",  # matches, but not a multiple of 4
        bytes(28),  # RTP-ish zeros, no cookie
    ):
        assert not is_stun(bad)


def test_transaction_id_of() -> None:
    """RFC 5389 §6: bytes 8-20; a message shorter than the header has none."""
    assert transaction_id_of(build_discovery_probe(TXID)) == TXID
    with pytest.raises(StunError, match=r"^STUN message shorter than 20 bytes$"):
        transaction_id_of(b"\x00" * 19)


# ----------------------------------------------------------------------------- builders


def test_discovery_probe_is_bare() -> None:
    """RFC 5389 §7.1 and §15.5: the probe is a Binding Request with FINGERPRINT only."""
    probe = build_discovery_probe(TXID)
    assert len(probe) == 28 and probe[:2] == b"\x00\x01"
    assert [kind for kind, _ in _attributes(probe)] == [Attr.FINGERPRINT]
    assert build_discovery_probe() != build_discovery_probe()  # random transaction ids


@pytest.mark.parametrize("mapped", [Address("198.51.100.1", 4000), Address("2001:db8::9", 1)])
@pytest.mark.parametrize("software", [None, "node-x"])
def test_discovery_round_trip(mapped: Address, software: str | None) -> None:
    """RFC 5389 §7.3.1: a valid unauthenticated request gets XOR-MAPPED-ADDRESS back."""
    probe = build_discovery_probe()
    result = validate_request(probe, lookup)
    assert (result.verdict, result.reason, result.reply) == (Verdict.DISCOVERY, "ok", None)
    assert result.transaction_id == transaction_id_of(probe)
    reply = build_discovery_response(transaction_id_of(probe), mapped, software)
    assert reply is not None
    kinds = [kind for kind, _ in _attributes(reply)]
    assert kinds == [Attr.XOR_MAPPED_ADDRESS, *([Attr.SOFTWARE] if software else []),
                     Attr.FINGERPRINT]
    answer = parse_binding_response(reply)
    assert answer == BindingResult(transaction_id_of(probe), mapped, software, None)
    assert validate_request(reply, lookup).reason == "response"  # §7.3: a server never answers


@given(
    node_ufrag=st.text(min_size=1, max_size=32).filter(lambda s: ":" not in s),
    client_ufrag=st.text(max_size=32),
    pwd=st.binary(min_size=1, max_size=64),
    priority=st.none() | st.integers(0, 2**32 - 1),
)
def test_leg_binding_round_trip(node_ufrag: str, client_ufrag: str, pwd: bytes,
                                priority: int | None) -> None:
    """RFC 5389 §10.1.1/§10.1.2: the leg request authenticates with the pwd as HMAC key."""
    request = build_leg_binding(node_ufrag, client_ufrag, pwd, TXID, priority=priority)
    result = validate_request(request, {node_ufrag: pwd}.get)
    assert (result.verdict, result.reason) == (Verdict.AUTHENTICATED, "ok")
    assert (result.node_ufrag, result.client_ufrag, result.pwd) == (node_ufrag, client_ufrag, pwd)
    assert result.transaction_id == TXID
    if priority is not None:  # without it, the fast path accepts it unparsed (message None)
        assert result.message.attributes.get("PRIORITY") == priority
    kinds = [kind for kind, _ in _attributes(request)]
    assert kinds == [Attr.USERNAME, *([Attr.PRIORITY] if priority is not None else []),
                     Attr.MESSAGE_INTEGRITY, Attr.FINGERPRINT]


@pytest.mark.parametrize("software", [None, "node-7"])
def test_leg_binding_response_round_trip(software: str | None) -> None:
    """RFC 5389 §10.1.2/§10.1.3: the success carries MESSAGE-INTEGRITY keyed by the same pwd."""
    request = build_leg_binding("node", "client", PWD, priority=7)
    reply = build_leg_binding_response(transaction_id_of(request), Address("::1", 9), PWD,
                                       software)
    assert parse_binding_response(reply, pwd=PWD) == BindingResult(
        transaction_id_of(request), Address("::1", 9), software, None)
    assert parse_binding_response(reply).mapped == Address("::1", 9)  # no pwd: not checked
    with pytest.raises(StunError, match=r"^STUN response MESSAGE-INTEGRITY does not verify$"):
        parse_binding_response(reply, pwd=b"other")


def test_success_without_integrity_is_refused_when_a_pwd_is_expected() -> None:
    """RFC 5389 §10.1.3: a response without MESSAGE-INTEGRITY on an authenticated leg."""
    reply = build_discovery_response(TXID, Address("192.0.2.1", 1))
    assert reply is not None
    with pytest.raises(StunError, match=r"^STUN response has no MESSAGE-INTEGRITY$"):
        parse_binding_response(reply, pwd=PWD)


def test_error_response_round_trip() -> None:
    """RFC 5389 §15.6 (class and number) and §15.9 (UNKNOWN-ATTRIBUTES padded to 4 bytes)."""
    reply = build_error_response(b"x" * 12, 420, "Unknown Attribute", unknown=[0x1234, 0x7F01,
                                                                             0x0002],
                                 software="node-1")
    assert parse_binding_response(reply) == BindingResult(b"x" * 12, None, "node-1",
                                                          (420, "Unknown Attribute"))
    raw = dict(_attributes(reply))
    assert raw[Attr.ERROR_CODE][:4] == b"\x00\x00\x04\x14"
    assert raw[Attr.UNKNOWN_ATTRIBUTES] == bytes.fromhex("12347f010002")
    unknown_at = reply.index(struct.pack("!HH", Attr.UNKNOWN_ATTRIBUTES, 6))
    assert reply[unknown_at + 10:unknown_at + 12] == b"\x00\x00"  # padding to 8 bytes
    assert Attr.MESSAGE_INTEGRITY not in raw


def test_error_response_with_pwd_is_signed() -> None:
    """RFC 5389 §10.1.2: errors other than 401 may carry MESSAGE-INTEGRITY; it must verify."""
    reply = build_error_response(TXID, 400, "Bad Request", pwd=PWD)
    assert parse_binding_response(reply, pwd=PWD).error == (400, "Bad Request")
    with pytest.raises(StunError, match=r"^STUN response MESSAGE-INTEGRITY does not verify$"):
        parse_binding_response(reply, pwd=b"other")
    unsigned = build_error_response(TXID, 401, "Unauthorized")
    assert parse_binding_response(unsigned, pwd=PWD).error == (401, "Unauthorized")


def test_builders_refuse_what_they_cannot_encode() -> None:
    """RFC 5389 §15.3 (USERNAME < 513 bytes), §15.6 (codes 300-699), §15.9 (16-bit types)."""
    with pytest.raises(StunError, match=r"^node ufrag must not contain ':'$"):
        build_leg_binding("a:b", "c", PWD)
    with pytest.raises(StunError, match=r"^USERNAME of 513 bytes, must be under 513$"):
        build_leg_binding("n", "c" * 511, PWD)
    with pytest.raises(StunError, match=r"^PRIORITY 4294967296 is not a 32-bit unsigned integer$"):
        build_leg_binding("n", "c", PWD, priority=2**32)
    with pytest.raises(StunError, match=r"^error code 200 is outside 300-699$"):
        build_error_response(TXID, 200, "OK")
    with pytest.raises(StunError, match=r"^UNKNOWN-ATTRIBUTES types must be 16-bit$"):
        build_error_response(TXID, 420, "x", unknown=[0x10000])


def test_long_text_is_cut_at_a_character() -> None:
    """RFC 5389 §15.6/§15.10: reason and SOFTWARE under 128 characters, still valid UTF-8."""
    reply = build_error_response(TXID, 400, "é" * 300, software="ü" * 300)
    result = parse_binding_response(reply)
    assert result.error == (400, "é" * 127) and result.software == "ü" * 127


def test_parse_binding_response_refuses_non_responses() -> None:
    """RFC 5389 §7.3.3: only Binding success or error responses; exact StunError messages."""
    with pytest.raises(StunError, match=r"^not a STUN message$"):
        parse_binding_response(b"\x80" + bytes(27))
    for message in (build_discovery_probe(), _req([], cls=Class.INDICATION),
                    _req([], cls=Class.SUCCESS, method=0x003)):
        with pytest.raises(StunError, match=r"^not a Binding response$"):
            parse_binding_response(message)
    overrun = _req([], cls=Class.SUCCESS, fingerprint=False)
    overrun = overrun[:2] + b"\x00\x08" + overrun[4:] + struct.pack("!HH", Attr.SOFTWARE, 40)
    overrun += b"abcd"
    with pytest.raises(StunError, match=r"^malformed STUN response: attribute 0x8022 overruns"):
        parse_binding_response(overrun)
    bad_address = _req([(Attr.XOR_MAPPED_ADDRESS, b"\x00\x07\x00\x00")], cls=Class.SUCCESS)
    with pytest.raises(StunError, match=r"^malformed STUN response: STUN address has unknown"):
        parse_binding_response(bad_address)


# ----------------------------------------------------------------------------- validator


def test_not_stun_is_ignored() -> None:
    """RFC 5389 §6 and §7.3: without the first two bits 0 and the magic cookie it is not STUN."""
    good = build_discovery_probe()
    for bad in (b"", good[:19], b"\x80" + good[1:], b"\x40" + good[1:],
                good[:4] + b"\x00\x00\x00\x00" + good[8:]):
        result = validate_request(bad, lookup)
        assert (result.verdict, result.reason, result.reply) == (Verdict.IGNORED, "not_stun",
                                                                   None)


def test_indications_are_not_answered() -> None:
    """RFC 5389 §7.3.2: "no response is generated for an indication"."""
    result = validate_request(_req([], cls=Class.INDICATION), lookup)
    assert (result.verdict, result.reason, result.reply) == (Verdict.IGNORED, "indication", None)
    assert result.transaction_id == TXID


@pytest.mark.parametrize("cls", [Class.SUCCESS, Class.ERROR])
def test_responses_to_a_server_are_not_answered(cls: Class) -> None:
    """RFC 5389 §7.3 and §7.3.3: a response is never answered (a node sends no requests)."""
    result = validate_request(_req([], cls=cls), lookup)
    assert (result.verdict, result.reason, result.reply) == (Verdict.IGNORED, "response", None)


def test_bad_fingerprint_is_silently_discarded() -> None:
    """RFC 5389 §7.3: a FINGERPRINT with the wrong value: the message is silently discarded."""
    for request in (build_discovery_probe(), build_leg_binding("node", "c", PWD)):
        bad = request[:-1] + bytes([request[-1] ^ 0x80])
        result = validate_request(bad, lookup)
        assert (result.verdict, result.reason, result.reply) == (Verdict.IGNORED,
                                                                   "bad_fingerprint", None)


def test_length_mismatch_is_400() -> None:
    """RFC 5389 §6 and §15.6: a length field that does not fit the datagram → 400 Bad Request."""
    probe = _req([FILLER])
    for bad in (probe[:2] + b"\x00\x04" + probe[4:], probe + b"\x00\x00\x00\x00",
                probe[:2] + b"\x00\x51" + probe[4:] + b"\x00"):
        error = _reject_checks(validate_request(bad, lookup), "malformed", 400)
        assert error[1] == "Bad Request: message length does not match"


def test_attribute_overrun_and_layout_errors_are_400() -> None:
    """RFC 5389 §15: TLVs must fit; §15.5 FINGERPRINT is last; §15.4 MESSAGE-INTEGRITY is 20."""

    def append(message: bytes, tail: bytes) -> bytes:  # length field kept right
        length = len(message) + len(tail) - STUN_HEADER_LENGTH
        return message[:2] + length.to_bytes(2, "big") + message[4:] + tail

    overrun = append(_req([FILLER], fingerprint=False),
                     struct.pack("!HH", Attr.SOFTWARE, 40) + b"abcd")
    after_fp = append(_req([FILLER]), struct.pack("!HH", Attr.SOFTWARE, 4) + b"abcd")
    short_mi = _req([FILLER, (Attr.MESSAGE_INTEGRITY, bytes(16))])
    cases = {
        overrun: "Bad Request: attribute 0x8022 overruns the message",
        after_fp: "Bad Request: attribute after FINGERPRINT",
        short_mi: "Bad Request: MESSAGE-INTEGRITY is not 20 bytes",
    }
    for request, phrase in cases.items():
        assert _reject_checks(validate_request(request, lookup), "malformed", 400)[1] == phrase


def test_undecodable_attribute_value_is_400() -> None:
    """RFC 5389 §15.3: USERNAME must be UTF-8; a value that does not decode → 400."""
    request = _req([(Attr.USERNAME, b"\xff\xfe:x")], key=PWD)
    _reject_checks(validate_request(request, lookup), "malformed", 400)
    short_priority = _req([(Attr.PRIORITY, b"\x00\x01")])
    _reject_checks(validate_request(short_priority, lookup), "malformed", 400)


def test_other_methods_are_400() -> None:
    """RFC 5389 §7.3: the method must be supported; nodes serve Binding only (Allocate → 400)."""
    result = validate_request(_req([], method=0x003), lookup)
    assert _reject_checks(result, "malformed", 400)[1] == "Unsupported method"


def test_unknown_comprehension_required_attribute_is_420_with_the_list() -> None:
    """RFC 5389 §7.3.1 and §15.9: 420 listing every unknown attribute below 0x8000, once."""
    request = _req([(0x07AD, b"1234"), (0x000C, b"\x40\x00\x00\x00"), (0x7FFF, bytes(4)),
                    (0x07AD, b"5678"), (0x8000, bytes(4))])
    result = validate_request(request, lookup, software="node-1")
    assert _reject_checks(result, "unknown_attribute", 420)[1] == "Unknown Attribute"
    assert result.reply is not None
    raw = dict(_attributes(result.reply))
    assert raw[Attr.UNKNOWN_ATTRIBUTES] == bytes.fromhex("07ad7fff")
    assert raw[Attr.SOFTWARE] == b"node-1"


def test_unknown_comprehension_optional_attribute_is_ignored() -> None:
    """RFC 5389 §7.3.1: comprehension-optional attributes (0x8000-0xFFFF) are ignored."""
    result = validate_request(_req([(0xC001, b"x")]), lookup)
    assert (result.verdict, result.reason) == (Verdict.DISCOVERY, "ok")


def test_attributes_after_message_integrity_are_ignored() -> None:
    """RFC 5389 §15.4: attributes after MESSAGE-INTEGRITY (but FINGERPRINT) are ignored."""
    signed = build_leg_binding("node", "client", PWD, TXID)[:-8]  # drop FINGERPRINT
    extra = struct.pack("!HH", 0x07AD, 4) + b"junk"
    request = signed[:2] + (len(signed) - 20 + 8).to_bytes(2, "big") + signed[4:] + extra
    result = validate_request(request, lookup)
    assert (result.verdict, result.node_ufrag) == (Verdict.AUTHENTICATED, "node")


@pytest.mark.parametrize("which", ["username_only", "integrity_only"])
def test_username_and_integrity_go_together(which: str) -> None:
    """RFC 5389 §10.1.2: USERNAME or MESSAGE-INTEGRITY missing (the other present) → 400."""
    request = (_req([FILLER, (Attr.USERNAME, b"node:client")]) if which == "username_only"
               else _req([FILLER], key=PWD))
    result = validate_request(request, lookup)
    error = _reject_checks(result, "no_integrity", 400)
    assert error[1] == "Bad Request: USERNAME and MESSAGE-INTEGRITY go together"


@pytest.mark.parametrize("username", ["nobody:client", "no-colon", ":", "n" * 513 + ":c"])
def test_unknown_username_is_401_without_integrity(username: str) -> None:
    """RFC 5389 §10.1.2: no credential for the USERNAME → 401, and the 401 is not signed."""
    request = _req([(Attr.USERNAME, username.encode())], key=PWD)
    result = validate_request(request, lookup)
    assert _reject_checks(result, "unknown_username", 401)[1] == "Unauthorized"
    assert result.reply is not None
    assert Attr.MESSAGE_INTEGRITY not in dict(_attributes(result.reply))


def test_bad_integrity_is_401_without_integrity() -> None:
    """RFC 5389 §10.1.2: MESSAGE-INTEGRITY that does not verify → 401, not signed."""
    request = build_leg_binding("node", "client", b"not-the-password")
    result = validate_request(request, lookup)
    assert _reject_checks(result, "bad_integrity", 401)[1] == "Unauthorized"
    assert result.reply is not None and result.pwd is None and result.node_ufrag is None
    assert Attr.MESSAGE_INTEGRITY not in dict(_attributes(result.reply))


def test_validation_outcomes_cover_the_verdicts() -> None:
    """Every Verdict is reachable (the tests above pin each reason)."""
    seen = {
        validate_request(b"", lookup).verdict,
        validate_request(build_discovery_probe(), lookup).verdict,
        validate_request(v.SAMPLE_REQUEST, lookup).verdict,
        validate_request(build_leg_binding("nobody", "c", PWD), lookup).verdict,
    }
    assert seen == set(Verdict)


# ----------------------------------------------------------------------------- robustness


@given(st.binary(max_size=200))
def test_validator_never_raises_on_random_bytes(data: bytes) -> None:
    """RFC 5389 §7.3: bad input from the network is answered or dropped, never a crash."""
    assert isinstance(validate_request(data, lookup), Validation)


@given(st.binary(max_size=120), st.sampled_from([0x0001, 0x0011, 0x0003, 0x0101]))
def test_validator_never_raises_on_stun_shaped_garbage(body: bytes, message_type: int) -> None:
    """A sound header with random attribute bytes reaches the TLV walk and aioice's parser."""
    header = struct.pack("!HHI", message_type, len(body), MAGIC_COOKIE) + TXID
    result = validate_request(header + body, lookup, software="node-1")
    assert result.transaction_id == TXID
    if result.reply is not None:
        assert is_stun(result.reply) and len(result.reply) <= 2 * (20 + len(body))


@given(st.integers(0, 107), st.integers(0, 255))
def test_validator_never_raises_on_mutated_requests(index: int, value: int) -> None:
    """One byte of RFC 5769 §2.1 changed: never a crash, never AUTHENTICATED if it was covered.

    MESSAGE-INTEGRITY covers bytes 0-100 (RFC 5389 §15.4); a mangled FINGERPRINT type
    turns it into an attribute after MESSAGE-INTEGRITY, which is ignored.
    """
    request = bytearray(v.SAMPLE_REQUEST)
    request[index] = value
    result = validate_request(bytes(request), lookup)
    if result.verdict is Verdict.AUTHENTICATED:
        assert bytes(request[:100]) == v.SAMPLE_REQUEST[:100]


@given(st.binary(max_size=120))
def test_parse_binding_response_raises_only_stun_error(data: bytes) -> None:
    """Client side: a garbled answer is a StunError (a WireError), never ValueError."""
    header = struct.pack("!HHI", 0x0101, len(data), MAGIC_COOKIE) + TXID
    for message in (data, header + data):
        try:
            parse_binding_response(message, pwd=PWD)
        except StunError as exc:
            assert isinstance(exc, WireError)


@given(st.integers(0, 75), st.integers(0, 255))
def test_parse_binding_response_on_mutated_vector(index: int, value: int) -> None:
    """One byte of RFC 5769 §2.2 changed: either a StunError or the same verified result."""
    response = bytearray(v.SAMPLE_IPV4_RESPONSE)
    response[index] = value
    try:
        result = parse_binding_response(bytes(response), pwd=v.PASSWORD)
    except StunError:
        return
    assert bytes(response[:72]) == v.SAMPLE_IPV4_RESPONSE[:72]  # covered by the HMAC, or its value
    assert result.mapped == v.IPV4_MAPPED


# ----------------------------------------------------------------------------- amplification


@given(st.binary(min_size=20, max_size=120))
def test_error_replies_are_at_most_twice_the_request(data: bytes) -> None:
    """No amplification (RFC 5389 §16): an error reply is at most 2× the request's size."""
    header = struct.pack("!HH", 0x0001, len(data) - 20 + (-len(data) % 4)) \
        + b"\x21\x12\xa4\x42" + data[8:20]
    request = header + data[20:] + bytes(-len(data) % 4)
    result = validate_request(request, lookup, software="a-rather-long-node-name-0123456789")
    if result.reply is not None:
        assert len(result.reply) <= 2 * len(request)


def test_tiny_requests_get_bounded_error_replies() -> None:
    """The smallest requests (20-byte header, 24 with one unknown attribute) stay within 2×."""
    long_name = "n" * 120
    bare = _req([], fingerprint=False)
    bad_method = validate_request(_req([], method=0x003, fingerprint=False), lookup,
                                  software=long_name)
    unknown = validate_request(_req([(0x0777, b"")], fingerprint=False), lookup,
                               software=long_name)
    short = validate_request(bare[:2] + b"\x00\x04" + bare[4:], lookup, software=long_name)
    for result, size in ((bad_method, 20), (unknown, 24), (short, 20)):
        assert result.reply is not None and len(result.reply) <= 2 * size
        assert _error(result)[0] in (400, 420)


@pytest.mark.parametrize("software", [None, "n", "node-with-a-long-name-0123456789"])
def test_discovery_response_fits_twice_the_request(software: str | None) -> None:
    """No amplification: SOFTWARE, then FINGERPRINT, give way to the 2× bound."""
    for request_length, mapped in ((20, Address("192.0.2.1", 1)), (28, Address("192.0.2.1", 1)),
                                   (28, Address("2001:db8::1", 1))):
        reply = build_discovery_response(TXID, mapped, software, max_length=2 * request_length)
        assert reply is not None and len(reply) <= 2 * request_length
        assert parse_binding_response(reply).mapped == mapped
    full = build_discovery_response(TXID, Address("192.0.2.1", 1), "n", max_length=56)
    assert full is not None and len(full) == 20 + 12 + 8 + 8  # the probe's answer with SOFTWARE
    assert parse_binding_response(full).software == "n"
    assert build_discovery_response(TXID, Address("2001:db8::1", 1), max_length=40) is None
