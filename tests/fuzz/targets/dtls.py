"""The ``dtls`` fuzz target (wire.dtls), and the DTLS certificate of the targets."""

from __future__ import annotations

import datetime
import functools

from wire.dtls import DATAGRAM_MTU, DtlsCertificate, DtlsRole, DtlsSrtp


@functools.cache
def certificate() -> DtlsCertificate:
    return DtlsCertificate.generate(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))


def dtls(data: bytes) -> None:
    """wire.dtls: the node's DTLS server takes any datagrams (the input split in two) without
    raising; what it sends is whole records in datagrams of at most the MTU."""
    server = DtlsSrtp(certificate(), DtlsRole.SERVER, certificate().fingerprint)
    for part in (data[: len(data) // 2], data[len(data) // 2:]):
        for datagram in server.receive(part, 1.0):
            assert len(datagram) <= DATAGRAM_MTU
