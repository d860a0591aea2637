"""TLS over a byte stream without I/O: the server side of one connection on memory BIOs.

The media node runs TLS this way (``ssl.SSLObject`` over ``ssl.MemoryBIO``,
the way ``asyncio`` itself does inside) instead of handing the socket to the
event loop's TLS, so that a connection is *admitted* before a single
handshake byte is processed, the handshake has a deadline the node counts,
and no byte of a ClientHello can reach the RFC 4571 framing: under uvloop
``loop.start_tls`` on an accepted socket let the first bytes through to the
plain protocol.

    tls = ServerTls(context)
    plaintext = tls.receive(data)   # TLS records in; application bytes out
    tls.send(plaintext)             # application bytes to protect
    wire_bytes = tls.data_to_send() # TLS records to write to the socket

``receive`` raises ``ssl.SSLError`` when the peer's TLS is wrong (a failed
handshake or a bad record); the caller closes the connection. After the
peer's close_notify, ``peer_closed`` is true and our close_notify waits in
``data_to_send()``: send it, then close.
"""

from __future__ import annotations

import contextlib
import ssl


class ServerTls:
    __slots__ = ("_incoming", "_object", "_outgoing", "established", "peer_closed")

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._object = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.established = False
        self.peer_closed = False  # the peer sent close_notify; ours is in data_to_send()

    def receive(self, data: bytes) -> bytes:
        """The application bytes ``data`` completes (b"" while handshaking or partial)."""
        self._incoming.write(data)
        if not self.established:
            try:
                self._object.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            self.established = True
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._object.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            if not chunk:  # close_notify: answer it, then the caller closes
                self.peer_closed = True
                with contextlib.suppress(ssl.SSLError):
                    self._object.unwrap()
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def send(self, data: bytes) -> None:
        self._object.write(data)

    def data_to_send(self) -> bytes:
        return self._outgoing.read()
