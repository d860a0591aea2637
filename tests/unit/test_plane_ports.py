"""The data plane sends on a port only if the port said so when it attached.

Defect: the plane asked every leg's sink ``getattr(sink, "fast_fd", None)``: any
object with that attribute was relayed on its descriptor, and a closing port
had to null the attribute before the engine replanned. Now a UDP port passes
its sink to :meth:`RelayPlane.attach`, and :meth:`RelayPlane.detach` forgets it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from media_node.plane import python_plane
from wire.transports import RungName


class Port:
    rung = RungName.UDP_5004

    def __init__(self, fast_fd: int | None = None) -> None:
        self.fast_fd = fast_fd  # what the old probe read

    def send(self, data: bytes, addr: Any) -> None:
        pass


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield sock
    sock.close()


def test_a_port_is_fast_from_attach_to_detach(udp: socket.socket) -> None:
    plane = python_plane()  # the routes' bookkeeping is one class over either plane
    port = Port()
    plane.attach(udp, lambda data, addr: None, port)
    assert plane.fast_fd(port) == udp.fileno()
    plane.detach(udp.fileno())
    assert plane.fast_fd(port) is None


def test_an_attribute_alone_earns_no_route(udp: socket.socket) -> None:
    """A sink that never attached as fast (a port that gave no sink, a TCP connection, a
    cascade) is relayed through Python, whatever attributes it has."""
    plane = python_plane()
    unattached = Port()
    plane.attach(udp, lambda data, addr: None)  # no sink given
    assert plane.fast_fd(unattached) is None
    assert plane.fast_fd(Port(fast_fd=7)) is None
    assert plane.fast_fd(None) is None
