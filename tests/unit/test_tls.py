"""TLS helpers: development CA, fingerprints (RFC 8122 §5) and SPKI pins (RFC 7469 §2.4)."""

from __future__ import annotations

import base64
import datetime
import re
import ssl

from cryptography import x509

from wire.tls import cert_fingerprint, issue, make_ca, spki_pin

NOW = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)


def test_issued_certificate_chains_to_the_ca_and_names_the_host() -> None:
    ca = make_ca(NOW)
    leaf = issue(ca, ["127.0.0.1", "localhost"], NOW)
    cert = x509.load_pem_x509_certificate(leaf.cert_pem)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    cert.verify_directly_issued_by(ca_cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]


def test_fingerprint_format_and_stability() -> None:
    leaf = issue(None, ["node"], NOW)
    fp = cert_fingerprint(leaf.cert_pem)
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", fp)
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_pem.decode())
    assert cert_fingerprint(der) == fp == leaf.fingerprint


def test_spki_pin_is_base64_sha256() -> None:
    pin = spki_pin(issue(None, ["node"], NOW).cert_pem)
    assert pin.startswith("sha256/") and len(base64.b64decode(pin[7:])) == 32


def test_key_never_in_repr() -> None:
    leaf = issue(None, ["node"], NOW)
    assert b"PRIVATE" in leaf.key_pem and "PRIVATE" not in repr(leaf)
