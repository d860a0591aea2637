"""A development PKI for one Pinhole deployment: a CA, the cloud's certificate, two orgs'
enrollment keys and hybrid node secrets, and the node secret, written to one directory.

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

from wire.tls import issue, make_ca

ORG = "acme"
#: A second organisation: its devices must never see or latch on ``ORG``'s hybrid node.
OTHER_ORG = "globex"


@dataclass(frozen=True, slots=True)
class Pki:
    directory: Path
    enrollment_key: str
    node_secret: str
    other_enrollment_key: str = ""

    def hybrid_secret_file(self, org: str = ORG) -> Path:
        """The org's hybrid node secret (``pinhole-hybrid-node --node-secret-file``)."""
        return self.directory / f"hybrid-secret-{org}"

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
    def orgs_file(self) -> Path:
        return self.directory / "orgs.json"

    @property
    def node_secret_file(self) -> Path:
        return self.directory / "node-secret"

    def stack_json(self, cloud_url: str,
                   nodes: Sequence[dict[str, object]] = ()) -> dict[str, object]:
        """What ``pinhole --stack`` reads: the cloud, the CA to trust, the org's key."""
        orgs = {ORG: {"enrollment_key": self.enrollment_key}}
        if self.other_enrollment_key:
            orgs[OTHER_ORG] = {"enrollment_key": self.other_enrollment_key}
        return {"cloud": cloud_url, "ca": str(self.ca_file), "orgs": orgs, "nodes": list(nodes)}


def _secret_write(path: Path, text: str) -> None:
    path.write_text(text)
    os.chmod(path, 0o600)


def write_pki(directory: Path, cloud_names: Sequence[str]) -> Pki:
    """A fresh CA, a cloud certificate for ``cloud_names`` (DNS names or IPs) and secrets."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca = make_ca(now)
    cert = issue(ca, cloud_names, now)
    pki = Pki(directory, secrets.token_urlsafe(16), secrets.token_urlsafe(16),
              secrets.token_urlsafe(16))
    pki.ca_file.write_text(ca.cert_pem.decode())
    pki.cert_file.write_text(cert.cert_pem.decode())
    _secret_write(pki.key_file, cert.key_pem.decode())
    hybrid = {ORG: secrets.token_urlsafe(16), OTHER_ORG: secrets.token_urlsafe(16)}
    _secret_write(pki.orgs_file, json.dumps({"orgs": [
        {"id": ORG, "enrollment_key": pki.enrollment_key, "hybrid_node_secret": hybrid[ORG]},
        {"id": OTHER_ORG, "enrollment_key": pki.other_enrollment_key,
         "hybrid_node_secret": hybrid[OTHER_ORG]},
    ]}))
    _secret_write(pki.node_secret_file, pki.node_secret)
    for org, secret in hybrid.items():
        _secret_write(pki.hybrid_secret_file(org), secret)
    return pki
