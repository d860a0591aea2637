"""The byte-level STUN fast path of ``wire.stun`` agrees with the full validator and aioice.

The node accepts its two common requests byte by byte (a discovery probe; a
leg request of USERNAME, MESSAGE-INTEGRITY, FINGERPRINT) and builds its two
answers without the generic encoder. These properties pin that nothing but
the speed changes: the same verdict, reason, transaction id, ufrags and
password as the full RFC 5389 §7.3 validator, on good requests, on every
single-byte mutation of them and on random bytes; and answers byte-identical
to ``encode_message`` (itself proven identical to aioice's encoder in
test_stun.py), which aioice parses and verifies (RFC 5389 §15.2, §15.4, §15.5).
"""

from __future__ import annotations

import hmac
import ipaddress

from aioice import stun as aioice_stun
from hypothesis import given
from hypothesis import strategies as st

from wire import stun
from wire.address import Address
from wire.stun import (
    Attr,
    Class,
    Method,
    Validation,
    Verdict,
    build_discovery_probe,
    build_discovery_response,
    build_leg_binding,
    build_leg_binding_response,
    encode_message,
    validate_request,
    xor_address_value,
)

ufrags = st.text(st.characters(codec="utf-8", exclude_characters=":"),
                 min_size=1, max_size=40)
pwds = st.binary(min_size=1, max_size=64)
txids = st.binary(min_size=12, max_size=12)
ipv4 = st.ip_addresses(v=4).map(str)
addresses = st.tuples(st.ip_addresses().map(str), st.integers(0, 0xFFFF))
softwares = st.none() | st.text(st.characters(codec="utf-8"), max_size=140)


def _key(result: Validation) -> tuple[object, ...]:
    """Everything but ``message`` (the full path's parsed aioice object)."""
    return (result.verdict, result.reason, result.transaction_id, result.reply,
            result.node_ufrag, result.client_ufrag, result.pwd)


def _agree(data: bytes, table: dict[str, bytes]) -> Validation:
    fast = validate_request(data, table.get, software="node-1")
    full = stun._validate_fully(data, table.get, "node-1")
    assert _key(fast) == _key(full)
    return fast


@given(ufrags, ufrags, pwds, txids, st.sampled_from(["right", "wrong", "unknown"]))
def test_leg_requests_agree_with_the_full_validator(
        node_ufrag: str, client_ufrag: str, pwd: bytes, txid: bytes, which: str) -> None:
    request = build_leg_binding(node_ufrag, client_ufrag, pwd, txid)
    table = {"right": {node_ufrag: pwd}, "wrong": {node_ufrag: pwd + b"x"},
             "unknown": {}}[which]
    result = _agree(request, table)
    if which == "right":
        assert stun.match_leg(request) is not None
        assert (result.verdict, result.message) == (Verdict.AUTHENTICATED, None)
        assert aioice_stun.parse_message(request).check_message_integrity(pwd)
    else:
        assert result.verdict is Verdict.REJECTED  # 401 built by the full path


@given(ufrags, ufrags, pwds, txids, st.data())
def test_mutated_leg_requests_agree(node_ufrag: str, client_ufrag: str, pwd: bytes,
                                    txid: bytes, data: st.DataObject) -> None:
    """Any one byte changed: both paths reach the same outcome (mostly a silent drop)."""
    request = bytearray(build_leg_binding(node_ufrag, client_ufrag, pwd, txid))
    index = data.draw(st.integers(0, len(request) - 1))
    request[index] = data.draw(st.integers(0, 255))
    _agree(bytes(request), {node_ufrag: pwd})


@given(txids, st.booleans(), st.data())
def test_discovery_probes_agree(txid: bytes, mutate: bool, data: st.DataObject) -> None:
    probe = bytearray(build_discovery_probe(txid))
    if data.draw(st.booleans()):  # the bare 20-byte form other clients send
        probe = bytearray(encode_message(Method.BINDING, Class.REQUEST, txid, [],
                                         fingerprint=False))
    if mutate:
        probe[data.draw(st.integers(0, len(probe) - 1))] = data.draw(st.integers(0, 255))
    result = _agree(bytes(probe), {})
    if not mutate:
        assert result.verdict is Verdict.DISCOVERY and result.transaction_id == txid


@given(st.binary(max_size=80))
def test_random_bytes_agree(data: bytes) -> None:
    _agree(data, {"a": b"pwd"})


@given(txids, addresses, softwares, st.none() | st.integers(0, 200))
def test_discovery_response_equals_the_generic_encoder(
        txid: bytes, mapped: tuple[str, int], software: str | None,
        max_length: int | None) -> None:
    ours = build_discovery_response(txid, mapped, software, max_length=max_length)
    address = [(Attr.XOR_MAPPED_ADDRESS,
                aioice_stun.pack_xor_address(mapped, txid))]
    soft = [] if software is None else [(Attr.SOFTWARE, software[:127].encode())]
    reference = None
    for attributes, fingerprint in ((address + soft, True), (address, True), (address, False)):
        reply = encode_message(Method.BINDING, Class.SUCCESS, txid, attributes,
                               fingerprint=fingerprint)
        if max_length is None or len(reply) <= max_length:
            reference = reply
            break
    assert ours == reference
    if ours is not None:
        parsed = aioice_stun.parse_message(ours)  # checks FINGERPRINT when present
        assert parsed.attributes["XOR-MAPPED-ADDRESS"] == (
            str(ipaddress.ip_address(mapped[0])), mapped[1])


@given(txids, addresses, pwds, softwares)
def test_leg_response_equals_the_generic_encoder(txid: bytes, mapped: tuple[str, int],
                                                 pwd: bytes, software: str | None) -> None:
    ours = build_leg_binding_response(txid, Address(*mapped), pwd, software)
    attributes = [(Attr.XOR_MAPPED_ADDRESS, aioice_stun.pack_xor_address(mapped, txid))]
    if software is not None:
        attributes.append((Attr.SOFTWARE, software[:127].encode()))
    assert ours == encode_message(Method.BINDING, Class.SUCCESS, txid, attributes,
                                  integrity_key=pwd)
    assert aioice_stun.parse_message(ours).check_message_integrity(pwd)


@given(txids, ipv4 | st.text(max_size=20), st.integers(0, 0xFFFF))
def test_ipv4_fast_path_equals_aioice(txid: bytes, host: str, port: int) -> None:
    """``ipv4_packed`` takes exactly the canonical dotted quads, as ``ipaddress`` does."""
    packed = stun.ipv4_packed(host)
    try:
        parsed = ipaddress.ip_address(host)
    except ValueError:
        assert packed is None
        return
    assert packed is None or packed == parsed.packed
    if parsed.version == 4 and str(parsed) == host:
        assert packed == parsed.packed
        assert xor_address_value((host, port), txid) == aioice_stun.pack_xor_address(
            (host, port), txid)


@given(txids, txids, ipv4, st.integers(0, 0xFFFF))
def test_an_ipv4_mapped_address_made_once_serves_every_transaction(
        first: bytes, second: bytes, host: str, port: int) -> None:
    """RFC 5389 §15.2: an IPv4 X-Address is XORed with the magic cookie alone, so the
    attribute ``stun.xor_mapped_ipv4`` keeps per source is right for any transaction
    (aioice, the reference, is given each one)."""
    for txid in (first, second):
        assert xor_address_value((host, port), txid) == aioice_stun.pack_xor_address(
            (host, port), txid)


@given(pwds, st.binary(max_size=600))
def test_cached_hmac_equals_hmac_digest(key: bytes, message: bytes) -> None:
    assert stun.hmac_sha1(key, message) == hmac.digest(key, message, "sha1")
    assert stun.hmac_sha1(key, message) == hmac.digest(key, message, "sha1")  # cached
