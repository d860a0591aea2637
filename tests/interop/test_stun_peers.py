"""The media node's STUN responder against real third-party peers.

- coturn's ``turnutils_stunclient`` (Debian ``coturn``) reads the mapped address;
- ``aioice`` as a client: its STUN transaction, and an ``aioice.Connection``
  with the node as ``stun_server`` gathering a server-reflexive candidate;
- ``tshark`` decodes a captured probe and answer as valid STUN (RFC 5389),
  with no malformed-packet warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
from pathlib import Path

import aioice
import pytest
from aioice import stun as aioice_stun

from tests.integration.node_harness import running_node
from tests.prereqs import require_root, require_tool
from wire.address import Address
from wire.transports import RungName, Transport

pytestmark = pytest.mark.interop


async def _run(*argv: str, timeout_s: float = 20.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    return proc.returncode or 0, out.decode(errors="replace")


async def test_coturn_stunclient_reads_the_mapped_address() -> None:
    """RFC 5389 §15.2: a third-party client decodes our XOR-MAPPED-ADDRESS."""
    tool = require_tool("turnutils_stunclient")
    async with running_node() as node:
        address = node.endpoint("udp/5004")
        code, out = await _run(tool, "-p", str(address.port), address.host)
    assert code == 0, out
    assert re.search(r"UDP reflexive addr: 127\.0\.0\.1:\d+", out), out
    assert node.engine.stun_answers.get("discovery", 0) >= 1


async def test_aioice_transaction_gets_a_binding_success() -> None:
    """aioice's own client transaction (RFC 5389 §7.2.1 retransmissions) completes."""
    async with running_node() as node:
        address = node.endpoint("udp/5004")
        loop = asyncio.get_running_loop()
        answers: asyncio.Queue[bytes] = asyncio.Queue()

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                answers.put_nowait(data)

        transport, _ = await loop.create_datagram_endpoint(Proto, remote_addr=address)
        request = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class.REQUEST)
        request.add_fingerprint()
        transport.sendto(bytes(request))
        response = aioice_stun.parse_message(await asyncio.wait_for(answers.get(), 2.0))
        transport.close()
    assert response.message_class == aioice_stun.Class.RESPONSE
    assert response.transaction_id == request.transaction_id
    assert response.attributes["XOR-MAPPED-ADDRESS"][0] == "127.0.0.1"
    assert response.attributes["SOFTWARE"] == "node-t"


async def test_aioice_connection_gathers_a_server_reflexive_candidate() -> None:
    """RFC 8445 §5.1.1.2: an ICE agent with the node as STUN server gets a srflx candidate."""
    async with running_node() as node:
        address = node.endpoint("udp/5004")
        connection = aioice.Connection(ice_controlling=True,
                                       stun_server=(address.host, address.port))
        try:
            await asyncio.wait_for(connection.gather_candidates(), 10)
            kinds = {c.type for c in connection.local_candidates}
        finally:
            await connection.close()
    assert "srflx" in kinds, kinds


async def test_tshark_decodes_probe_and_answer_as_valid_stun(tmp_path: Path) -> None:
    """A capture of a probe and its answer on UDP 5004 decodes as STUN, nothing malformed."""
    require_root()
    tshark = require_tool("tshark")
    from client.probe import ProbeTarget, probe

    capture = tmp_path / "stun.pcapng"
    async with running_node() as node:
        address = node.endpoint("udp/5004")
        proc = await asyncio.create_subprocess_exec(
            tshark, "-i", "lo", "-f", f"udp and host {address.host} and port {address.port}",
            "-c", "2", "-a", "duration:20", "-w", str(capture),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        while b"Capturing on" not in await asyncio.wait_for(proc.stderr.readline(), 15):
            pass
        # the filter is attached just after tshark says so: probe until it has two packets
        # (it then ends), rather than guess when it starts to see them
        target = ProbeTarget(node.info.id, RungName.UDP_5004, Transport.UDP, Address(*address))
        async with asyncio.timeout(20):
            while proc.returncode is None:
                [outcome] = await probe([target])
                assert outcome.rtt_ms is not None
                with contextlib.suppress(TimeoutError):  # not yet: probe again
                    await asyncio.wait_for(proc.wait(), 0.5)
    code, text = await _run(tshark, "-r", str(capture), "-V",
                            "-d", f"udp.port=={address.port},stun")
    assert code == 0, text
    assert text.count("Session Traversal Utilities for NAT") == 2, text
    assert "Binding Request" in text and "Binding Success Response" in text
    assert "XOR-MAPPED-ADDRESS" in text and "SOFTWARE" in text
    assert "Malformed" not in text and "Expert Info (Warning" not in text, text
