"""A deployment that restarts keeps its PKI, but never an expiring or misnamed certificate.

The compose cloud runs ``pinhole-lab pki`` at every start on the volume it kept: before, an
existing PKI was kept whatever its age, so a stack left for 30 days (wire.tls.VALIDITY) came
back with an expired certificate and every client failed TLS.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from cryptography import x509

from lab.__main__ import main
from lab.pki import RENEW_BEFORE, read_pki, renew, renewal_reason, write_pki
from wire.tls import CertifiedKey, issue

NAMES = ["cloud", "198.18.0.1"]
NOW = datetime.datetime.now(datetime.UTC)


def _cert(directory: Path, name: str = "cloud.pem") -> x509.Certificate:
    return x509.load_pem_x509_certificate((directory / name).read_bytes())


def _pki_cli(directory: Path, *names: str) -> dict[str, object]:
    argv = ["pki", "--out", str(directory), "--cloud-url", "https://198.18.0.1:443",
            "--public-url", "https://localhost:8443"]
    for name in names or NAMES:
        argv += ["--name", name]
    assert main(argv) == 0
    return {}


def test_a_fresh_pki_is_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _pki_cli(tmp_path)
    before = (tmp_path / "cloud.pem").read_bytes()
    capsys.readouterr()
    _pki_cli(tmp_path)
    assert json.loads(capsys.readouterr().out)["action"] == "kept"
    assert (tmp_path / "cloud.pem").read_bytes() == before


def test_an_expiring_certificate_is_renewed_by_the_same_ca(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The cloud's certificate issued 25 days ago (5 left, under RENEW_BEFORE) by a CA that
    stays good: a new certificate from the same CA; the enrollment key and node secret kept."""
    old = write_pki(tmp_path, NAMES, NOW)
    ca = CertifiedKey((tmp_path / "ca.pem").read_bytes(), (tmp_path / "ca.key").read_bytes())
    aged = issue(ca, NAMES, NOW - datetime.timedelta(days=25))
    (tmp_path / "cloud.pem").write_bytes(aged.cert_pem)
    (tmp_path / "stack.json").write_text("{}")
    assert "expires" in str(renewal_reason(tmp_path, NAMES, NOW))
    ca_before = (tmp_path / "ca.pem").read_bytes()
    capsys.readouterr()
    _pki_cli(tmp_path)
    out = json.loads(capsys.readouterr().out)
    assert out["action"] == "renewed" and "expires" in out["reason"]
    cert = _cert(tmp_path)
    assert cert.not_valid_after_utc - NOW > RENEW_BEFORE
    assert (tmp_path / "ca.pem").read_bytes() == ca_before  # clients keep trusting the CA
    assert cert.issuer == _cert(tmp_path, "ca.pem").subject
    kept = read_pki(tmp_path)
    assert (kept.enrollment_key, kept.node_secret) == (old.enrollment_key, old.node_secret)
    assert renewal_reason(tmp_path, NAMES, NOW) is None
    public = json.loads((tmp_path / "public" / "stack.json").read_text())
    assert public["cloud"] == "https://localhost:8443" and public["ca"] == "ca.pem"
    assert (tmp_path / "public" / "ca.pem").read_bytes() == ca_before
    for secret in ("stack.json", "public/stack.json", "ca.key", "cloud.key", "node-secret"):
        assert (tmp_path / secret).stat().st_mode & 0o077 == 0, secret  # enrollment key etc.


def test_an_expiring_ca_is_replaced(tmp_path: Path) -> None:
    """A CA with one day left is no base for a 30-day certificate: a new CA."""
    write_pki(tmp_path, NAMES, NOW - datetime.timedelta(days=29))
    (tmp_path / "stack.json").write_text("{}")
    ca_before = (tmp_path / "ca.pem").read_bytes()
    _pki_cli(tmp_path)
    assert (tmp_path / "ca.pem").read_bytes() != ca_before
    assert _cert(tmp_path, "ca.pem").not_valid_after_utc - NOW > RENEW_BEFORE


def test_new_names_renew_the_certificate(tmp_path: Path) -> None:
    write_pki(tmp_path, NAMES, NOW)
    (tmp_path / "stack.json").write_text("{}")
    assert "not cloud, 198.18.0.1, localhost" in str(
        renewal_reason(tmp_path, [*NAMES, "localhost"], NOW))
    _pki_cli(tmp_path, *NAMES, "localhost")
    assert renewal_reason(tmp_path, [*NAMES, "localhost"], NOW) is None


def test_a_renewal_keeps_the_cloud_key_so_the_pins_hold(tmp_path: Path) -> None:
    """RFC 7469 §2.4: clients pin the cloud's SPKI from stack.json; a renewed certificate is
    for the same key (and the backup pin stays), so a renewal never locks clients out."""
    now = datetime.datetime.now(datetime.UTC)
    old = write_pki(tmp_path, ["cloud"], now)
    later = now + datetime.timedelta(days=25)
    assert renewal_reason(tmp_path, ["cloud"], later) is not None
    renewed = renew(tmp_path, ["cloud"], later)
    assert renewed.pins == old.pins and len(old.pins) == 2
    assert read_pki(tmp_path).pins == old.pins
