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

from wire.tls import issue, make_ca

ORG = "acme"


@dataclass(frozen=True, slots=True)
class Pki:
    directory: Path
    enrollment_key: str
    node_secret: str
    operator_token: str = ""

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

    @property
    def operator_token_file(self) -> Path:
        return self.directory / "operator-token"

    def stack_json(self, cloud_url: str,
                   nodes: Sequence[dict[str, object]] = ()) -> dict[str, object]:
        """What ``pinhole --stack`` reads: the cloud, the CA to trust, the org's key."""
        return {"cloud": cloud_url, "ca": str(self.ca_file),
                "orgs": {ORG: {"enrollment_key": self.enrollment_key}}, "nodes": list(nodes),
                "console": {"url": cloud_url + "/", "operator_token": self.operator_token}}


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
    _secret_write(pki.orgs_file, json.dumps(
        {"orgs": [{"id": ORG, "enrollment_key": pki.enrollment_key,
                   "hybrid_node_secret": secrets.token_urlsafe(16)}]}))
    _secret_write(pki.node_secret_file, pki.node_secret)
    _secret_write(pki.operator_token_file, pki.operator_token)
    return pki
