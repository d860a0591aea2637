"""A development PKI for one Pinhole deployment: a CA, the cloud's certificate, the org's
enrollment key and the node secret, written to one directory.

The loopback stack writes it into its state directory; in docker-compose.yml the ``pki``
service writes it once into the shared volume, and the cloud, the media nodes and the
clients read their part from there (``stack.json`` is what ``pinhole --stack`` reads).
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wire.tls import issue, make_ca, spare_key, spki_pin, spki_pin_of_public_key

ORG = "acme"


@dataclass(frozen=True, slots=True)
class Pki:
    directory: Path
    enrollment_key: str
    node_secret: str
    #: the cloud's SPKI pins (RFC 7469 §2.4): its key's, then a backup key's (§4.3) kept in
    #: ``cloud-backup.key`` for a rotation; clients pin these from stack.json
    pins: tuple[str, ...] = ()

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

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
    def orgs_file(self) -> Path:
        return self.directory / "orgs.json"

    @property
    def node_secret_file(self) -> Path:
        return self.directory / "node-secret"

    @property
    def operator_token_file(self) -> Path:
        return self.directory / "operator-token"

    @property
    def operator_token(self) -> str:
        return self.operator_token_file.read_text().strip()

    def stack_json(self, cloud_url: str,
                   nodes: Sequence[dict[str, object]] = ()) -> dict[str, object]:
        """What ``pinhole --stack`` reads: the cloud, the CA to trust, the cloud's pins, the
        org's key."""
        return {"cloud": cloud_url, "ca": str(self.ca_file), "pins": list(self.pins),
                "orgs": {ORG: {"enrollment_key": self.enrollment_key}}, "nodes": list(nodes)}


def private_directory(directory: Path) -> None:
    """Create ``directory`` (and its parents) and make it 0700: only its owner enters it."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte (never briefly 0644)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def write_pki(directory: Path, cloud_names: Sequence[str]) -> Pki:
    """A fresh CA, a cloud certificate for ``cloud_names`` (DNS names or IPs) and secrets,
    in a 0700 directory, every secret 0600."""
    private_directory(directory)
    now = datetime.datetime.now(datetime.UTC)
    ca = make_ca(now)
    cert = issue(ca, cloud_names, now)
    backup = spare_key()
    pki = Pki(directory, secrets.token_urlsafe(16), secrets.token_urlsafe(16),
              (spki_pin(cert.cert_pem), spki_pin_of_public_key(backup.cert_pem)))
    pki.ca_file.write_text(ca.cert_pem.decode())
    pki.cert_file.write_text(cert.cert_pem.decode())
    write_secret(pki.key_file, cert.key_pem.decode())
    write_secret(pki.backup_key_file, backup.key_pem.decode())
    write_secret(pki.orgs_file, json.dumps(
        {"orgs": [{"id": ORG, "enrollment_key": pki.enrollment_key,
                   "hybrid_node_secret": secrets.token_urlsafe(16)}]}))
    write_secret(pki.node_secret_file, pki.node_secret)
    write_secret(pki.operator_token_file, secrets.token_urlsafe(24))
    return pki
