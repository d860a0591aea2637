"""The amplification cap on a real node socket (RFC 5389 §16: a node is not a reflector).

The same surviving mutant as ``tests/unit/test_engine_amplification.py``, seen from
outside: a bare 20-byte Binding Request sent to the node's UDP 5004 and 33434 gets
at most 40 bytes back, still a valid answer carrying the mapped address.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct

import pytest
from aioice import stun

from tests.integration.node_harness import running_node

pytestmark = pytest.mark.slow

LONG_ID = "node-with-a-rather-long-name-for-its-software-attribute"


@pytest.mark.parametrize("rung", ["udp/5004", "udp/33434"])
async def test_a_bare_request_to_the_node_earns_at_most_twice_its_size(rung: str) -> None:
    async with running_node(LONG_ID) as node:
        target = node.endpoint(rung)
        request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + os.urandom(12)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((target.host, 0))
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_sendto(sock, request, (target.host, target.port))
            reply = await asyncio.wait_for(loop.sock_recv(sock, 2048), 2)
            assert len(reply) <= 2 * len(request)
            message = stun.parse_message(reply)
            assert message.attributes["XOR-MAPPED-ADDRESS"] == sock.getsockname()
