"""A development PKI for one Pinhole deployment: a CA, the cloud's certificate, two orgs'
enrollment keys and hybrid node secrets, and the node secret, written to one directory.

The loopback stack writes it into its state directory; in docker-compose.yml the cloud's
first step (``pinhole-lab pki``) writes it into the shared volume, and the cloud, the media
nodes and the clients read their part from there (``stack.json`` is what ``pinhole --stack``
reads). A deployment that restarts keeps its PKI, but :func:`renewal_reason` checks it at
every start: a certificate that expires within :data:`RENEW_BEFORE`, or that no longer names
the cloud's names, is re-issued by :func:`renew` (by the same CA while the CA itself is good,
so that clients keep trusting it, and for the same key, so that their pins hold).

Every secret is written 0600 from its first byte in a 0700 directory. ``stack.json``
carries the cloud's SPKI pins (RFC 7469 §2.4): its key's and a backup key's
(``cloud-backup.key``, in no certificate yet, §4.3) for a rotation. The operator
token (``operator-token``) is the credential the cloud's operator pages require; the TURN
secret (``turn-secret``) is the one the cloud mints TURN credentials with and coturn checks
them with (docker-compose.yml's ``turn`` service, :mod:`lab.turn_service`); the token key
(``token-key``) is the device-token signing key that cloud replicas share (the loopback
stack's replicas, docker-compose.scale.yml's).
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509

from wire.tls import CertifiedKey, issue, make_ca, spare_key, spki_pin, spki_pin_of_key

ORG = "acme"
RENEW_BEFORE = datetime.timedelta(days=7)  # certificates are valid for 30 (wire.tls.VALIDITY)
#: A second organisation: its devices must never see or latch on ``ORG``'s hybrid node.
OTHER_ORG = "globex"


@dataclass(frozen=True, slots=True)
class Pki:
    directory: Path
    enrollment_key: str
    node_secret: str
    other_enrollment_key: str = ""
    #: the cloud's SPKI pins: its key's, then the backup key's; clients pin these
    pins: tuple[str, ...] = ()

    def hybrid_secret_file(self, org: str = ORG) -> Path:
        """The org's hybrid node secret (``pinhole-hybrid-node --node-secret-file``)."""
        return self.directory / f"hybrid-secret-{org}"

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key_file(self) -> Path:
        return self.directory / "ca.key"

    @property
    def cert_file(self) -> Path:
        return self.directory / "cloud.pem"

    @property
    def key_file(self) -> Path:
        return self.directory / "cloud.key"

    @property
    def backup_key_file(self) -> Path:
        return self.directory / "cloud-backup.key"

    @property
    def operator_token_file(self) -> Path:
        return self.directory / "operator-token"

    @property
    def operator_token(self) -> str:
        return self.operator_token_file.read_text().strip()

    @property
    def turn_secret_file(self) -> Path:
        """The secret shared by the cloud and coturn (``use-auth-secret``), kept like the
        operator token: made once, never replaced by a renewal."""
        return self.directory / "turn-secret"

    @property
    def token_key_file(self) -> Path:
        """The hex seed of the device-token signing key (``pinhole-cloud
        --token-key-file``): every replica verifies the tokens the others signed. Made once,
        never replaced by a renewal (the devices' tokens stay good)."""
        return self.directory / "token-key"

    @property
    def orgs_file(self) -> Path:
        return self.directory / "orgs.json"

    @property
    def node_secret_file(self) -> Path:
        return self.directory / "node-secret"

    def stack_json(self, cloud_url: str,
                   nodes: Sequence[dict[str, object]] = ()) -> dict[str, object]:
        """What ``pinhole --stack`` reads: the cloud, the CA to trust, the cloud's pins, the
        orgs' keys."""
        orgs = {ORG: {"enrollment_key": self.enrollment_key}}
        if self.other_enrollment_key:
            orgs[OTHER_ORG] = {"enrollment_key": self.other_enrollment_key}
        # absolute: a client reads stack.json from wherever it is started
        return {"cloud": cloud_url, "ca": str(self.ca_file.absolute()), "pins": list(self.pins),
                "orgs": orgs, "nodes": list(nodes)}


def private_directory(directory: Path) -> None:
    """Create ``directory`` (and its parents) and make it 0700: only its owner enters it."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)


def flag_safe_token(nbytes: int, token: Callable[[int], str] = secrets.token_urlsafe) -> str:
    """A random URL-safe secret that never starts with ``-``: one in 64 of
    ``token_urlsafe``'s does, and ``--enrollment-key -Xy…`` then reads as a missing value
    (argparse: "expected one argument"), so a key the stack handed out fails as typed."""
    while (value := token(nbytes)).startswith("-"):
        pass
    return value


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte (never briefly 0644)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def _with_pins(pki: Pki) -> Pki:
    """``pki`` with the pins of its certificate's key and its backup key; an older PKI
    gets its backup key, operator token, TURN secret and token key here."""
    if not pki.backup_key_file.exists():
        write_secret(pki.backup_key_file, spare_key().decode())
    if not pki.operator_token_file.exists():
        write_secret(pki.operator_token_file, flag_safe_token(24))
    if not pki.turn_secret_file.exists():
        write_secret(pki.turn_secret_file, flag_safe_token(32))
    if not pki.token_key_file.exists():
        write_secret(pki.token_key_file, secrets.token_hex(32))
    pins = (spki_pin(pki.cert_file.read_bytes()), spki_pin_of_key(pki.backup_key_file.read_bytes()))
    return replace(pki, pins=pins)


def _write_certificates(pki: Pki, ca: CertifiedKey, cert: CertifiedKey) -> None:
    pki.ca_file.write_text(ca.cert_pem.decode())
    write_secret(pki.ca_key_file, ca.key_pem.decode())
    write_secret(pki.key_file, cert.key_pem.decode())
    pki.cert_file.write_text(cert.cert_pem.decode())


def write_pki(directory: Path, cloud_names: Sequence[str],
              now: datetime.datetime | None = None) -> Pki:
    """A fresh CA, a cloud certificate for ``cloud_names`` (DNS names or IPs) and secrets,
    in a 0700 directory, every secret 0600."""
    private_directory(directory)
    now = now or datetime.datetime.now(datetime.UTC)
    ca = make_ca(now)
    pki = Pki(directory, flag_safe_token(16), flag_safe_token(16),
              flag_safe_token(16))
    _write_certificates(pki, ca, issue(ca, cloud_names, now))
    hybrid = {ORG: flag_safe_token(16), OTHER_ORG: flag_safe_token(16)}
    write_secret(pki.orgs_file, json.dumps({"orgs": [
        {"id": ORG, "enrollment_key": pki.enrollment_key, "hybrid_node_secret": hybrid[ORG]},
        {"id": OTHER_ORG, "enrollment_key": pki.other_enrollment_key,
         "hybrid_node_secret": hybrid[OTHER_ORG]},
    ]}))
    write_secret(pki.node_secret_file, pki.node_secret)
    for org, secret in hybrid.items():
        write_secret(pki.hybrid_secret_file(org), secret)
    return _with_pins(pki)


def read_pki(directory: Path) -> Pki:
    """The PKI :func:`write_pki` wrote (``OSError``/``ValueError`` when it is not whole)."""
    orgs = json.loads((directory / "orgs.json").read_text())["orgs"]
    key = next(o["enrollment_key"] for o in orgs if o["id"] == ORG)
    other = next((o["enrollment_key"] for o in orgs if o["id"] == OTHER_ORG), "")
    return _with_pins(Pki(directory, str(key), (directory / "node-secret").read_text().strip(),
                          str(other)))


def _names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return ({str(n) for n in san.get_values_for_type(x509.DNSName)}
            | {str(n) for n in san.get_values_for_type(x509.IPAddress)})


def renewal_reason(directory: Path, cloud_names: Sequence[str],
                   now: datetime.datetime) -> str | None:
    """Why the PKI in ``directory`` must be renewed at ``now``, or ``None`` when it is good."""
    try:
        ca = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        cert = x509.load_pem_x509_certificate((directory / "cloud.pem").read_bytes())
    except (OSError, ValueError) as exc:
        return f"the certificates cannot be read ({exc})"
    for what, c in (("the CA", ca), ("the cloud's certificate", cert)):
        if c.not_valid_after_utc - now < RENEW_BEFORE:
            return f"{what} expires at {c.not_valid_after_utc.isoformat()}"
    if _names(cert) != {str(n) for n in cloud_names}:
        return (f"the cloud's certificate names {', '.join(sorted(_names(cert)))}, not "
                f"{', '.join(cloud_names)}")
    return None


def renew(directory: Path, cloud_names: Sequence[str], now: datetime.datetime) -> Pki:
    """A new cloud certificate, signed by the same CA while that CA stays good for
    :data:`RENEW_BEFORE` and its key is at hand, else by a new CA. The enrollment key and the
    node secret are kept, and so is the cloud's key when it can be read: the clients' pins
    hold."""
    pki = read_pki(directory)
    ca: CertifiedKey | None = None
    try:
        ca_pem = pki.ca_file.read_bytes()
        if x509.load_pem_x509_certificate(ca_pem).not_valid_after_utc - now >= RENEW_BEFORE:
            ca = CertifiedKey(ca_pem, pki.ca_key_file.read_bytes())
    except (OSError, ValueError):
        ca = None
    ca = ca or make_ca(now)
    try:
        key_pem: bytes | None = pki.key_file.read_bytes()
    except OSError:
        key_pem = None
    _write_certificates(pki, ca, issue(ca, cloud_names, now, key_pem))
    return _with_pins(pki)
