"""A byte-level fast path for the two Binding Requests a node answers most (RFC 5389).

Almost every STUN message a media node gets has one of two shapes:

- a discovery probe: a Binding Request with no attribute, or with FINGERPRINT
  alone (RFC 5389 §15.5), which is what ``build_discovery_probe`` sends;
- a leg request: USERNAME, MESSAGE-INTEGRITY, FINGERPRINT in that order
  (RFC 5389 §15.3, §15.4, §15.5), which is what ``build_leg_binding`` sends
  to latch a leg and keep its consent (RFC 7675).

The full validator (``wire.stun.validate_request``) walks the TLVs, parses the
message with aioice and checks it: about 10-18 µs per request from Python.
Recognising the two shapes byte by byte costs a fraction of that. Every
function here either recognises a request that the full validator would
accept with the same outcome, or returns None/False so the caller takes the
full path (which also builds every error reply); a property test checks both
paths agree on random and mutated requests.
"""

from __future__ import annotations

import binascii
import functools
import hmac
from collections.abc import Callable
from typing import Any, Final

try:
    import _hashlib

    _hmac_new: Callable[..., Any] = _hashlib.hmac_new
except ImportError:  # a CPython without OpenSSL: the pure-Python HMAC copies too
    _hmac_new = hmac.new

_COOKIE: Final = b"\x21\x12\xa4\x42"  # RFC 5389 §6
_BARE_REQUEST: Final = b"\x00\x01\x00\x00"  # Binding Request, no attribute
_FINGERPRINTED_REQUEST: Final = b"\x00\x01\x00\x08"  # Binding Request, FINGERPRINT only
_BINDING_REQUEST: Final = b"\x00\x01"
_BINDING_SUCCESS: Final = b"\x01\x01"
_USERNAME: Final = b"\x00\x06"
_INTEGRITY_HEAD: Final = b"\x00\x08\x00\x14"  # MESSAGE-INTEGRITY, 20 bytes
_FINGERPRINT_HEAD: Final = b"\x80\x28\x00\x04"  # FINGERPRINT, 4 bytes
_FINGERPRINT_XOR: Final = 0x5354554E  # RFC 5389 §15.5
_XOR_MAPPED_IPV4: Final = b"\x00\x20\x00\x08\x00\x01"  # XOR-MAPPED-ADDRESS, 8 bytes, IPv4
_MAX_USERNAME: Final = 512  # RFC 5389 §15.3: less than 513 bytes


@functools.lru_cache(maxsize=1024)  # one entry per live leg password, bounded
def _keyed(key: bytes) -> Any:
    """HMAC-SHA1 with its key schedule done once; each message works on a copy.

    OpenSSL's HMAC object (``_hashlib``, behind :mod:`hmac`) copies in about a
    third of the time ``hmac.digest`` takes to key a new one.
    """
    return _hmac_new(key, digestmod="sha1")


def hmac_sha1(key: bytes, message: bytes) -> bytes:
    """``hmac.digest(key, message, "sha1")``, faster for a key seen before."""
    mac = _keyed(key).copy()
    mac.update(message)
    digest: bytes = mac.digest()
    return digest


def _fingerprint_ok(data: bytes) -> bool:
    """The last attribute is FINGERPRINT over everything before it (the length is final)."""
    return binascii.crc32(data[:-8]) ^ _FINGERPRINT_XOR == int.from_bytes(data[-4:], "big")


def match_discovery(data: bytes) -> bool:
    """A Binding Request with no attribute, or a FINGERPRINT alone that checks out."""
    if len(data) == 20:
        return data[0:4] == _BARE_REQUEST and data[4:8] == _COOKIE
    return (len(data) == 28 and data[0:4] == _FINGERPRINTED_REQUEST and data[4:8] == _COOKIE
            and data[20:24] == _FINGERPRINT_HEAD and _fingerprint_ok(data))


def match_leg(data: bytes) -> tuple[str, str, int] | None:
    """USERNAME ``a:b``, MESSAGE-INTEGRITY, FINGERPRINT (valid): ``(a, b, integrity offset)``.

    The integrity itself is checked by :func:`integrity_ok` once the caller
    has the password for ``a``.
    """
    size = len(data)
    if (size < 56 or data[0:2] != _BINDING_REQUEST or data[4:8] != _COOKIE
            or data[20:22] != _USERNAME or int.from_bytes(data[2:4], "big") != size - 20):
        return None
    length = int.from_bytes(data[22:24], "big")
    integrity_at = 24 + length + (-length % 4)
    if (length > _MAX_USERNAME or size != integrity_at + 32
            or data[integrity_at:integrity_at + 4] != _INTEGRITY_HEAD
            or data[size - 8:size - 4] != _FINGERPRINT_HEAD or not _fingerprint_ok(data)):
        return None
    try:
        username = data[24:24 + length].decode("utf8")
    except UnicodeDecodeError:
        return None
    node_ufrag, sep, client_ufrag = username.partition(":")
    if not sep:
        return None
    return node_ufrag, client_ufrag, integrity_at


def integrity_ok(data: bytes, integrity_at: int, key: bytes) -> bool:
    """MESSAGE-INTEGRITY at ``integrity_at`` verifies with ``key`` (RFC 5389 §15.4).

    The HMAC covers the message up to the attribute, with the header's length
    counting the attribute itself (and not the FINGERPRINT after it).
    """
    covered = b"".join((data[0:2], (integrity_at + 4).to_bytes(2, "big"),
                        data[4:integrity_at]))
    return hmac.compare_digest(data[integrity_at + 4:integrity_at + 24],
                               hmac_sha1(key, covered))


def binding_success(transaction_id: bytes, attributes: bytes, key: bytes | None,
                    fingerprint: bool = True) -> bytes:
    """A Binding success response from its encoded attributes (RFC 5389 §6, §7.3.1).

    Then MESSAGE-INTEGRITY keyed by ``key`` (§15.4), when given, and
    FINGERPRINT (§15.5): ``encode_message`` for the two answers a node sends
    most, without building them from a list (a test compares the two).
    """
    tail = _COOKIE + transaction_id
    size = len(attributes)
    if key is not None:
        head = _BINDING_SUCCESS + (size + 24).to_bytes(2, "big") + tail
        attributes += _INTEGRITY_HEAD + hmac_sha1(key, head + attributes)
        size += 24
    if not fingerprint:
        return _BINDING_SUCCESS + size.to_bytes(2, "big") + tail + attributes
    message = _BINDING_SUCCESS + (size + 8).to_bytes(2, "big") + tail + attributes
    crc = binascii.crc32(message) ^ _FINGERPRINT_XOR
    return message + _FINGERPRINT_HEAD + crc.to_bytes(4, "big")


@functools.lru_cache(maxsize=4096)  # a node answers the same few thousand sources
def ipv4_packed(host: str) -> bytes | None:
    """The four bytes of a canonical dotted-quad IPv4 address; None for anything else.

    Canonical as ``ipaddress`` accepts it: four decimal parts of 0-255,
    no leading zeros, no sign or space.
    """
    parts = host.split(".")
    if len(parts) != 4:
        return None
    out = bytearray(4)
    for i, part in enumerate(parts):
        if not (part.isascii() and part.isdigit()) or len(part) > 3 or (
                len(part) > 1 and part[0] == "0"):
            return None
        value = int(part)
        if value > 255:
            return None
        out[i] = value
    return bytes(out)


@functools.lru_cache(maxsize=4096)  # one entry per source a node answers, bounded
def xor_mapped_ipv4(host: str, port: int) -> bytes | None:
    """The XOR-MAPPED-ADDRESS attribute for an IPv4 source (RFC 5389 §15.2), whole.

    Family 1, the port XOR the cookie's top 16 bits, the address XOR the cookie:
    unlike IPv6's it does not depend on the transaction id, so a node makes it
    once per source, not once per answer. None for anything but a canonical
    IPv4 address and a port of 0-65535 (the caller passes an ``int`` port).
    """
    packed = ipv4_packed(host)
    if packed is None or not 0 <= port <= 0xFFFF:
        return None
    port_and_address = port.to_bytes(2, "big") + packed
    return _XOR_MAPPED_IPV4 + bytes(
        a ^ b for a, b in zip(port_and_address, _COOKIE[:2] + _COOKIE, strict=True))
