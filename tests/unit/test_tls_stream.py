"""wire.tls_stream.ServerTls: the node's TLS on memory BIOs, against Python's own client.

Why it exists: under uvloop ``loop.start_tls`` on an accepted socket let the
first ClientHello bytes reach the plain protocol; running TLS on memory BIOs
lets the node admit a connection before any handshake byte and count a
failed or late handshake.
"""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest

from wire.tls import issue, server_context, unverified_client_context
from wire.tls_stream import ServerTls


@pytest.fixture
def server(tmp_path: Path) -> ServerTls:
    made = issue(None, ["127.0.0.1"], datetime.datetime.now(datetime.UTC))
    (tmp_path / "c.pem").write_bytes(made.cert_pem)
    (tmp_path / "c.key").write_bytes(made.key_pem)
    return ServerTls(server_context(str(tmp_path / "c.pem"), str(tmp_path / "c.key")))


class Client:
    def __init__(self) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = unverified_client_context().wrap_bio(self.incoming, self.outgoing,
                                                        server_hostname="node")

    def exchange(self, server: ServerTls) -> bytes:
        """Client records to the server and back; the server's plaintext."""
        plain = server.receive(self.outgoing.read())
        self.incoming.write(server.data_to_send())
        return plain

    def handshake(self, server: ServerTls) -> None:
        for _ in range(4):
            try:
                self.tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                self.exchange(server)
        raise AssertionError("no handshake")


def test_handshake_then_bytes_both_ways_then_close_notify(server: ServerTls) -> None:
    client = Client()
    client.handshake(server)
    client.tls.write(b"\x00\x04ping")
    assert client.exchange(server) == b"\x00\x04ping" and server.established
    server.send(b"\x00\x04pong")
    client.incoming.write(server.data_to_send())
    assert client.tls.read(100) == b"\x00\x04pong"
    with pytest.raises(ssl.SSLWantReadError):
        client.tls.unwrap()  # sends close_notify, waits for the server's
    assert client.exchange(server) == b"" and server.peer_closed
    client.tls.unwrap()  # the server answered: a clean close, no 30 s shutdown timeout


def test_bytes_that_are_not_tls_raise_ssl_error(server: ServerTls) -> None:
    with pytest.raises(ssl.SSLError):
        server.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not server.established


def test_a_partial_client_hello_waits(server: ServerTls) -> None:
    assert server.receive(b"\x16\x03\x01") == b"" and not server.established
