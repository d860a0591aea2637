"""RTP and SRTP details a mutation run found untested (``make mutate``)."""

from __future__ import annotations

import struct

from wire.rtp import parse_rtp_header
from wire.srtp import SrtpKeys, SrtpProfile


def test_one_csrc_without_an_extension_is_not_an_extension() -> None:
    """RFC 3550 §5.1: X is bit 0x10 of the first byte, CC its low four bits; a packet
    with CC=1 and X=0 has a 16-byte header and no extension."""
    b0 = 0x80 | 0x01  # V=2, P=0, X=0, CC=1
    packet = struct.pack("!BBHII", b0, 0, 1, 160, 0xABCD) + struct.pack("!I", 42) + b"pay"
    header = parse_rtp_header(packet)
    assert (header.csrc_count, header.extension, header.header_length) == (1, False, 16)


def test_srtp_keys_never_show_their_master_key() -> None:
    """Keys never appear in logs: ``repr`` of a key shows no key material."""
    keys = SrtpKeys.generate(SrtpProfile.AES_CM_128_HMAC_SHA1_80)
    text = repr(keys)
    assert keys.master.hex() not in text and repr(keys.master) not in text
    assert keys.to_b64() not in text
