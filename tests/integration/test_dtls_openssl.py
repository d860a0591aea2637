"""The node's DTLS-SRTP server (wire.dtls) against `openssl s_client -dtls1_2 -use_srtp` over
UDP loopback: a peer nobody here wrote, in another process, with its own OpenSSL build.
It prints the exported keying material, so the RFC 5764 §4.2 key split is checked against
bytes we did not compute."""

from __future__ import annotations

import datetime
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Final

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.prereqs import require_tool
from wire.dtls import EXPORTER_LABEL, DtlsCertificate, DtlsRole, DtlsSrtp, DtlsState
from wire.srtp import SrtpProfile

DEADLINE_S: Final = 15.0
#: RFC 5764 §4.1.2 names, with key and salt lengths (RFC 3711 §8.2, RFC 7714 §12).
PROFILES: Final = {
    SrtpProfile.AES_CM_128_HMAC_SHA1_80: ("SRTP_AES128_CM_SHA1_80", 16, 14),
    SrtpProfile.AEAD_AES_128_GCM: ("SRTP_AEAD_AES_128_GCM", 16, 12),
}


def _client_files(tmp_path: Path) -> tuple[Path, Path, DtlsCertificate]:
    """s_client's self-signed certificate and key as PEM files (the node asks for one)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "s_client")])
    now = datetime.datetime.now(datetime.UTC)
    signed = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
              .public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(days=1))
              .not_valid_after(now + datetime.timedelta(days=1))
              .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    cert_file.write_bytes(signed.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file, DtlsCertificate(key, signed)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_openssl_s_client_gets_the_same_keys(tmp_path: Path, profile: SrtpProfile) -> None:
    """RFC 5764 §4.1.2 (use_srtp) and §4.2 (client key, server key, client salt, server
    salt from EXTRACTOR-dtls_srtp); RFC 8122 §5: s_client is shown our certificate and we
    check its fingerprint; RFC 5246 §7.2.1: our close_notify ends its connection."""
    openssl = require_tool("openssl")
    name, key_len, salt_len = PROFILES[profile]
    cert_file, key_file, client_identity = _client_files(tmp_path)
    server_cert = DtlsCertificate.generate(datetime.datetime.now(datetime.UTC))
    dtls = DtlsSrtp(server_cert, DtlsRole.SERVER, client_identity.fingerprint, (profile,))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.1)
        port = sock.getsockname()[1]
        process = subprocess.Popen(
            [openssl, "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{port}",
             "-use_srtp", name, "-cert", str(cert_file), "-key", str(key_file),
             "-keymatexport", EXPORTER_LABEL.decode(),
             "-keymatexportlen", str(2 * (key_len + salt_len)), "-showcerts"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            dtls.start(time.monotonic())
            end = time.monotonic() + DEADLINE_S
            while dtls.state is DtlsState.CONNECTING and time.monotonic() < end:
                try:
                    data, peer = sock.recvfrom(65536)
                except TimeoutError:
                    at = dtls.timer()
                    if at is not None and time.monotonic() >= at:
                        dtls.handle_timer(time.monotonic())
                    continue
                for datagram in dtls.receive(data, time.monotonic()):
                    sock.sendto(datagram, peer)
            assert dtls.state is DtlsState.CONNECTED, dtls.failure
            for datagram in dtls.close():
                sock.sendto(datagram, peer)
            output = process.communicate(timeout=DEADLINE_S)[0].decode(errors="replace")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert f"SRTP Extension negotiated, profile={name}" in output
    exported = re.search(r"Keying material: ([0-9A-Fa-f]+)", output)
    assert exported is not None, output
    material = bytes.fromhex(exported[1])
    assert len(material) == 2 * (key_len + salt_len)
    k, s = key_len, salt_len
    assert dtls.keys is not None and dtls.keys.profile is profile
    assert dtls.keys.local.master == material[k:2 * k] + material[2 * k + s:]  # server's
    assert dtls.keys.remote.master == material[:k] + material[2 * k:2 * k + s]  # client's
    shown = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", output,
                      re.S)
    assert shown is not None
    der = x509.load_pem_x509_certificate(shown[0].encode()).public_bytes(
        serialization.Encoding.DER)
    assert server_cert.fingerprint.matches(der)
