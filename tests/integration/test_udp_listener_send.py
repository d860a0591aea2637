"""The UDP listener's own socket (``media_node.listeners.UdpListener``).

The node's data plane reads the port and asyncio has no transport on it, so
the listener does what a transport did: a packet reaches its address from the
listener's port, a send the kernel refuses is counted and never raised into
the relay, a full send buffer queues a little, a buffer that stays full is
dropped from and counted rather than queued without bound, and the socket
closes with the listener.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from media_node.engine import Engine
from media_node.listeners import SEND_QUEUE_LIMIT, UdpListener, bind_udp
from tests.prereqs import require_root, require_tool
from wire.transports import RungName

ROOT = Path(__file__).resolve().parents[2]


async def _listener() -> tuple[UdpListener, Engine]:
    engine = Engine("send-test", stun_rate=0)
    return await bind_udp(engine, "127.0.0.1", 0, RungName.UDP_5004, 0.0), engine


def _peer() -> socket.socket:
    """A client's socket on loopback, waiting at most 2 s for a packet."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(2.0)
    return peer


@pytest.mark.asyncio
async def test_a_packet_leaves_from_the_listeners_port() -> None:
    listener, _ = await _listener()
    peer = _peer()
    try:
        listener.send(b"\x80relayed", peer.getsockname())
        data, source = await asyncio.to_thread(peer.recvfrom, 2048)
        assert data == b"\x80relayed"
        assert source == ("127.0.0.1", listener.port)  # the port clients latched on
    finally:
        peer.close()
        listener.close()


@pytest.mark.asyncio
async def test_a_refused_send_is_counted_not_raised() -> None:
    listener, engine = await _listener()
    try:
        # broadcast without SO_BROADCAST: the kernel says EACCES on this very send
        listener.send(b"\x80x", ("255.255.255.255", 9))
        assert engine.drops.get("udp_error") == 1
    finally:
        listener.close()


@pytest.mark.asyncio
async def test_the_socket_closes_with_the_listener_and_a_late_send_is_nothing() -> None:
    listener, engine = await _listener()
    own = listener._socket
    assert own.fileno() >= 0
    listener.close()
    assert own.fileno() == -1 and listener.fast_fd is None
    listener.send(b"\x80late", ("127.0.0.1", 9))  # after close: nothing, no error
    listener.close()  # twice: nothing
    assert engine.drops == {}


def test_a_send_buffer_that_stays_full_is_dropped_from_and_counted_not_queued_forever() -> None:
    """Defect: every packet refused with EAGAIN went to the transport's queue, which
    grew without bound while the egress stayed slower than the media (house rule: bad
    conditions never grow memory without bound).

    Caused for real: in a namespace of its own the listener sends through a veth whose
    egress ``tc tbf`` holds to 8 kbit/s, so the queued packets keep the socket's send
    buffer full and the kernel says EAGAIN; 5,000 packets of 172 B would queue 800 kB.
    Then the shaper goes, as an egress that recovers: the port sends what it queued
    (when the socket is writable again) and drops nothing more.
    """
    require_root()
    require_tool("ip")
    require_tool("tc")
    ns = f"pinhole-full-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for command in ("ip link set lo up",
                        "ip link add v0 type veth peer name v1",
                        "ip addr add 10.251.0.1/24 dev v0",
                        "ip link set v0 up", "ip link set v1 up",
                        # no ARP answer needed: the packets wait in the shaper, not for one
                        "ip neigh add 10.251.0.2 lladdr 02:00:00:00:00:02 dev v0",
                        "tc qdisc add dev v0 root tbf rate 8kbit burst 1600 limit 10000000"):
            subprocess.run(["ip", "netns", "exec", ns, *command.split()], check=True)
        out = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.integration.full_send_party",
             "--bind", "10.251.0.1", "--to", "10.251.0.2", "--packets", "5000",
             "--lift", "v0"],
            cwd=ROOT, check=True, capture_output=True, text=True, timeout=60).stdout
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    result = json.loads(out.strip().splitlines()[-1])
    # only a send refused with EAGAIN is queued or dropped: the fault is real, not simulated
    assert 0 < result["held_bytes"] <= SEND_QUEUE_LIMIT  # a little queued, never more
    assert result["dropped"] > 0  # the rest dropped and counted
    assert result["drained"] and result["dropped_after"] == 0
