"""lab.net.free_port: a port for a server about to start, that nothing takes meanwhile.

The defect it pins: free_port let the kernel pick, so the port came from the ephemeral range
(net.ipv4.ip_local_port_range), the one the kernel also hands every outgoing connection. In a
busy suite a client socket took the port before squid bound it, squid exited 1 and the test
waited 20 s for a listener that never came (tests/interop/test_proxies.py).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from lab.net import _bindable, free_port


def _ephemeral() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def test_the_port_is_outside_the_range_outgoing_connections_draw_from() -> None:
    low, high = _ephemeral()
    ports = {free_port() for _ in range(50)}
    assert all(not low <= port <= high for port in ports), sorted(ports)
    assert len(ports) > 40  # drawn at random: parallel callers rarely meet


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM])
def test_a_port_held_in_tcp_or_udp_is_not_handed_out(kind: int) -> None:
    """coturn and the media nodes take a port in both protocols."""
    port = free_port()
    assert _bindable("127.0.0.1", port)
    with socket.socket(socket.AF_INET, kind) as held:
        held.bind(("127.0.0.1", port))
        assert not _bindable("127.0.0.1", port)
