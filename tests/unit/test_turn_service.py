"""docker-compose.yml's turn service (``pinhole-lab turn``, lab.turn_service) before coturn
starts: its certificate from the stack's CA, its configuration from the secret the cloud's
``pinhole-lab pki`` step keeps in the volume, the URLs the cloud hands out for it.

What coturn then does with them (an Allocate over UDP 3478 and TLS 443, RFC 8656 §7) is
proved against the real coturn by tests/docker/test_compose_engine.py."""

from __future__ import annotations

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509

from cloud.settings import TURN_URL
from lab.firewall import LabError
from lab.pki import read_pki, renew, write_pki
from lab.turn import TLS_PORT, UDP_PORT, TurnServer, config_text
from lab.turn_service import main, prepare, urls

NOW = datetime.datetime.now(datetime.UTC)
ADDRESS = "198.18.0.5"


def _settings(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_coturn_gets_a_certificate_from_the_stacks_ca_and_the_clouds_secret(
        tmp_path: Path) -> None:
    """The certificate names the service's address and is signed by the CA clients trust;
    the configuration holds the secret the cloud reads (``PINHOLE_TURN_SECRET_FILE``), and
    the key and the configuration are 0600: the secret is on no command line."""
    pki = write_pki(tmp_path, ["cloud", "198.18.0.1"], NOW)
    server = prepare(tmp_path, ADDRESS, NOW)
    assert (server.address, server.port) == (ADDRESS, TLS_PORT)
    cert = x509.load_pem_x509_certificate(server.cert_file.read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(pki.ca_file.read_bytes()))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.IPv4Address(ADDRESS)]
    secret = pki.turn_secret_file.read_text().strip()
    assert f"static-auth-secret={secret}" in _settings(server.config_file)
    assert server.argv() == ["-c", str(server.config_file)]
    for private in (server.key_file, server.config_file, pki.turn_secret_file):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private


def test_coturn_listens_on_udp_3478_and_tls_443_and_relays_only_on_its_network(
        tmp_path: Path) -> None:
    """RFC 8656 §3.1: TURN over UDP on its default port, and over TLS on 443 for networks
    that let only HTTPS out; no plain TCP or DTLS listener; relays to the compose network's
    /24 alone (coturn's allow list over a deny-all)."""
    write_pki(tmp_path, ["cloud"], NOW)
    lines = _settings(prepare(tmp_path, ADDRESS, NOW).config_file)
    for line in (f"listening-ip={ADDRESS}", f"relay-ip={ADDRESS}", f"listening-port={UDP_PORT}",
                 f"tls-listening-port={TLS_PORT}", "no-tcp", "no-dtls", "use-auth-secret",
                 "denied-peer-ip=0.0.0.0-255.255.255.255",
                 "allowed-peer-ip=198.18.0.0-198.18.0.255"):
        assert line in lines, line
    assert "no-udp" not in lines and "allow-loopback-peers" not in lines
    # the loopback stack's coturn is unchanged: TLS alone
    loopback = config_text(TurnServer(tmp_path, "127.0.0.254", TLS_PORT), "127.0.0", "s")
    assert "no-udp" in loopback.splitlines()
    assert not any(line.startswith("listening-port=") for line in loopback.splitlines())


def test_the_urls_are_ones_the_cloud_accepts() -> None:
    """What docker-compose.yml gives the cloud as PINHOLE_TURN_URL (RFC 7065 §3.1)."""
    assert urls(ADDRESS) == ["turn:198.18.0.5:3478?transport=udp",
                             "turns:198.18.0.5:443?transport=tcp"]
    assert all(TURN_URL.fullmatch(url) for url in urls(ADDRESS))


def test_the_turn_secret_is_made_once_and_kept(tmp_path: Path) -> None:
    """The cloud's pki step runs at every start: the secret coturn and the cloud share is
    made with the PKI and kept when the PKI is read again or renewed (a restarted cloud and a
    running coturn keep agreeing)."""
    pki = write_pki(tmp_path, ["cloud"], NOW)
    secret = pki.turn_secret_file.read_text()
    assert len(secret) >= 32
    read_pki(tmp_path)
    renew(tmp_path, ["cloud", "another-name"], NOW)
    assert pki.turn_secret_file.read_text() == secret
    pki.turn_secret_file.unlink()  # a volume from before the turn service gets one
    assert read_pki(tmp_path).turn_secret_file.read_text().strip()


def test_without_the_pki_or_with_another_address_family_it_says_why(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="pinhole-lab pki"):
        prepare(tmp_path, ADDRESS, NOW)
    write_pki(tmp_path, ["cloud"], NOW)
    with pytest.raises(LabError, match="not an IPv4 address"):
        prepare(tmp_path, "2001:db8::5", NOW)


def test_without_coturn_it_exits_2_naming_the_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no turnserver on it
    assert main(["--state-dir", str(tmp_path), "--listen", ADDRESS]) == 2
    assert "apt-get install coturn" in capsys.readouterr().err
