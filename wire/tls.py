"""TLS helpers: a development CA, server certificates, fingerprints and pins.

The cloud serves HTTPS with a certificate from a CA that Pinhole generates
for development; clients trust that CA (``--ca``) and may also pin the
cloud's public key (SPKI SHA-256, as in RFC 7469 §2.4): the pins, primary and
backup, come with the enrollment material, never from a first connection.  A
media node's TLS certificate is self-signed; its SHA-256 fingerprint travels in the node list
and the client checks it on every TLS media connection.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import hmac
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY: Final = datetime.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class CertifiedKey:
    """A PEM certificate and its PEM private key; ``repr`` hides the key."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)

    @property
    def fingerprint(self) -> str:
        return cert_fingerprint(self.cert_pem)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Pinhole development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def make_ca(now: datetime.datetime, common_name: str = "Pinhole development CA") -> CertifiedKey:
    """A self-signed CA certificate for a development stack."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return CertifiedKey(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _load_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey:
    loaded = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError("the key is not an EC private key")
    return loaded


def issue(
    ca: CertifiedKey | None, names: Sequence[str], now: datetime.datetime,
    key_pem: bytes | None = None,
) -> CertifiedKey:
    """A server certificate for ``names`` (DNS names or IPs), signed by ``ca``.

    With ``ca=None`` the certificate is self-signed (a media node's). With
    ``key_pem`` the certificate is for that key (a renewal that keeps the key, and so
    the SPKI pins of clients, RFC 7469 §2.4); else for a new one.
    """
    key = _load_key(key_pem) if key_pem is not None else ec.generate_private_key(ec.SECP256R1())
    subject = _name(names[0] if names else "pinhole")
    if ca is None:
        issuer, signer = subject, key
    else:
        ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
        issuer, signer = ca_cert.subject, _load_key(ca.key_pem)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(signer, hashes.SHA256())
    )
    return CertifiedKey(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _der(cert: bytes) -> bytes:
    """DER bytes from a PEM or DER certificate."""
    if cert.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(cert).public_bytes(serialization.Encoding.DER)
    return cert


def cert_fingerprint(cert: bytes) -> str:
    """SHA-256 of the DER certificate, as colon-separated upper-case hex (RFC 8122 §5)."""
    digest = hashlib.sha256(_der(cert)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def spki_pin(cert: bytes) -> str:
    """Base64 SHA-256 of the SubjectPublicKeyInfo (RFC 7469 §2.4), ``sha256/…`` form."""
    spki = (
        x509.load_der_x509_certificate(_der(cert))
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


@dataclass(frozen=True, slots=True)
class PinCheck:
    """A certificate held against pins: what it presented (in the pins' form), and
    whether that is one of them."""

    seen: str
    matched: bool


def check_pins(cert: bytes, pins: Sequence[str]) -> PinCheck:
    """The one pin comparison: ``cert`` (DER or PEM) against ``pins``.

    Pins are either SPKI pins, ``sha256/<base64>`` (RFC 7469 §2.4: the cloud's
    key, primary and backup), or certificate fingerprints, colon-separated hex
    (RFC 8122 §5: a media node's certificate, as the node list publishes it); the
    first pin's form decides (no pins: the SPKI pin is what is seen, and
    ``matched`` is True: nothing to check).
    Compared in constant time (:func:`hmac.compare_digest`).
    """
    spki = not pins or pins[0].startswith("sha256/")
    seen = spki_pin(cert) if spki else cert_fingerprint(cert)
    if not pins:
        return PinCheck(seen, True)
    matched = False
    for pin in pins:  # every pin compared: the time says nothing about which matched
        matched |= hmac.compare_digest(seen.encode(), pin.encode())
    return PinCheck(seen, matched)


def spare_key() -> bytes:
    """A backup private key (PEM) with no certificate yet: RFC 7469 §4.3 asks for a backup
    pin naming a key that is not in the current chain, for a rotation."""
    return _key_pem(ec.generate_private_key(ec.SECP256R1()))


def spki_pin_of_key(key_pem: bytes) -> str:
    """:func:`spki_pin` of a PEM private key's public half (a key with no certificate yet)."""
    spki = _load_key(key_pem).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A TLS 1.2+ server context for the cloud or a node."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def client_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying client context trusting ``ca_file`` (the system store when ``None``)."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@functools.cache
def unverified_client_context() -> ssl.SSLContext:
    """A client context that checks nothing itself: the caller *must* then compare the
    peer's certificate fingerprint with the one published in the node list.

    Shared (it holds no trust store): building a context costs tens of
    milliseconds, which would skew concurrent RTT probes.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
