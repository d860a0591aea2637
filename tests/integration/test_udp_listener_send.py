"""The UDP listener's own send path (``media_node.listeners.UdpListener``).

Packets leave by ``sendto`` on a duplicate of the listener's descriptor
(``bench/relay.py``: the transport's ``sendto`` cost 0.3 µs a packet). What
the transport did for free must still hold: a packet reaches its address
from the listener's port, a send the kernel refuses is counted and never
raised into the relay, a full send buffer hands the packet to the
transport's queue, and the duplicate descriptor closes with the transport.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from media_node.engine import Engine
from media_node.listeners import UdpListener, bind_udp


async def _listener() -> tuple[asyncio.DatagramTransport, UdpListener, Engine]:
    engine = Engine("send-test", stun_rate=0)
    transport, _ = await bind_udp(engine, "127.0.0.1", 0, "udp/5004", 0.0)
    listener = transport.get_protocol()
    assert isinstance(listener, UdpListener)
    return transport, listener, engine


def _peer() -> socket.socket:
    """A client's socket on loopback, waiting at most 2 s for a packet."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(2.0)
    return peer


@pytest.mark.asyncio
async def test_a_packet_leaves_from_the_listeners_port() -> None:
    transport, listener, _ = await _listener()
    peer = _peer()
    try:
        listener.send(b"\x80relayed", peer.getsockname())
        data, source = await asyncio.to_thread(peer.recvfrom, 2048)
        assert data == b"\x80relayed"
        assert source == transport.get_extra_info("sockname")  # the port clients latched on
    finally:
        peer.close()
        transport.close()


@pytest.mark.asyncio
async def test_a_refused_send_is_counted_not_raised() -> None:
    transport, listener, engine = await _listener()
    try:
        # broadcast without SO_BROADCAST: the kernel says EACCES on this very send
        listener.send(b"\x80x", ("255.255.255.255", 9))
        assert engine.drops.get("udp_error") == 1
    finally:
        transport.close()


@pytest.mark.asyncio
async def test_a_full_send_buffer_hands_the_packet_to_the_transport() -> None:
    """A full buffer (EAGAIN) cannot be caused on loopback at will: the socket's
    send is replaced by one that says so, and the transport must carry it."""
    transport, listener, _ = await _listener()
    peer = _peer()

    def full(data: bytes, addr: object) -> int:
        raise BlockingIOError

    listener._sendto = full
    try:
        listener.send(b"\x80queued", peer.getsockname())
        data, _ = await asyncio.to_thread(peer.recvfrom, 2048)
        assert data == b"\x80queued"
    finally:
        peer.close()
        transport.close()


@pytest.mark.asyncio
async def test_the_duplicate_descriptor_closes_with_the_transport() -> None:
    transport, listener, _ = await _listener()
    own = listener._socket
    assert own is not None and own.fileno() >= 0
    transport.close()
    for _ in range(100):
        if own.fileno() == -1:
            break
        await asyncio.sleep(0.01)
    assert own.fileno() == -1
    listener.send(b"\x80late", ("127.0.0.1", 9))  # after close: nothing, no error
