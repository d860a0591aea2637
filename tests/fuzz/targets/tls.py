"""The ``tls`` fuzz target (wire.tls_stream)."""

from __future__ import annotations

import datetime
import functools
import ssl
import tempfile
from pathlib import Path

from wire.tls import issue, server_context
from wire.tls_stream import ServerTls


@functools.cache
def _server_context() -> ssl.SSLContext:
    made = issue(None, ["127.0.0.1"], datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "c.pem"), Path(tmp, "c.key")
        cert.write_bytes(made.cert_pem)
        key.write_bytes(made.key_pem)
        return server_context(str(cert), str(key))


def tls(data: bytes) -> None:
    """wire.tls_stream: the node's TLS takes any bytes, in any chunks; ssl.SSLError only."""
    server = ServerTls(_server_context())
    cut = data[0] % (len(data) + 1) if data else 0
    try:
        server.receive(data[:cut])
        server.receive(data[cut:])
    except ssl.SSLError:
        return
    server.data_to_send()
