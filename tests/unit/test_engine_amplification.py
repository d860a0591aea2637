"""The node's amplification cap, through the engine (RFC 5389 §16: not a reflector).

Pins down a surviving mutant: the wire tests covered ``build_discovery_response``'s
``max_length``, but with the engine's ``max_length=2 * len(data)`` removed a 20-byte
request earned a 68-byte reply (3.4×) and no test failed.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from aioice import stun

from media_node.engine import Engine
from wire.stun import build_discovery_probe
from wire.transports import RungName

BINDING_REQUEST = 0x0001
MAGIC_COOKIE = 0x2112A442


class FakeSink:
    rung = RungName.UDP_5004

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def send(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))


def bare_binding_request() -> bytes:
    """The smallest valid Binding Request (RFC 5389 §6): a 20-byte header, no attributes."""
    return struct.pack("!HHI", BINDING_REQUEST, 0, MAGIC_COOKIE) + os.urandom(12)


def test_a_bare_20_byte_request_earns_at_most_40_bytes() -> None:
    engine = Engine("node-with-a-rather-long-name-for-its-software-attribute")
    sink = FakeSink()
    request = bare_binding_request()
    engine.on_packet(request, sink, ("192.0.2.1", 40000), 0.0)
    assert len(sink.sent) == 1
    reply = sink.sent[0][0]
    assert len(reply) <= 2 * len(request) == 40
    message = stun.parse_message(reply)
    assert message.message_class == stun.Class.RESPONSE
    assert message.attributes["XOR-MAPPED-ADDRESS"] == ("192.0.2.1", 40000)
    assert "SOFTWARE" not in message.attributes  # left out to fit the bound


def test_a_full_probe_still_gets_software_when_it_fits() -> None:
    """The bound trims, it does not starve: a probe with FINGERPRINT (28 bytes) may earn 56,
    and a node id short enough for SOFTWARE keeps it."""
    engine = Engine("n1")
    sink = FakeSink()
    probe = build_discovery_probe()
    engine.on_packet(probe, sink, ("192.0.2.1", 40000), 0.0)
    reply = sink.sent[0][0]
    assert len(reply) <= 2 * len(probe)
    assert stun.parse_message(reply).attributes["SOFTWARE"].endswith("n1")
