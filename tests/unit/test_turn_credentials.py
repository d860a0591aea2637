"""TURN credentials in coturn's shared-secret scheme (``use-auth-secret``), minted by the cloud.

coturn's README.turnserver, "TURN REST API": the username is
``"timestamp" + ":" + "username"`` (the timestamp the Unix time the credential expires),
the password ``base64_encode(hmac-sha1(shared-secret, temporary-username))``; the TURN
server then runs RFC 8489 §9.2's long-term credential mechanism with them and refuses a
timestamp in the past. ``turnadmin`` cannot compute one (its ``-P`` makes a salted SHA-256
hash for its own admin users, ``-k`` the RFC 8489 §9.2.2 MD5 key), so the worked example is
openssl's; the real coturn checks minted credentials in tests/integration/test_turn_relay.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from cloud import settings as cloud_settings
from cloud.errors import TurnUnavailable
from cloud.turn import expiry_of, turn_credentials, turn_password
from edge.boundary import Failure
from wire.models import IceServer, IceServers

URL = "turns:turn.example:443?transport=tcp"
SECRET = b"north-wind-7"
NOW = 1_700_000_000.75  # a fake clock: credentials never read the real one
# printf '%s' '1700003600:dev-4f2a9c' | openssl dgst -sha1 -hmac 'north-wind-7' -binary | base64
WORKED_USERNAME = "1700003600:dev-4f2a9c"
WORKED_PASSWORD = "ebAxsHDqIV2QifJir3WQrDy5PZs="

DEVICE_IDS = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)


def test_the_worked_example() -> None:
    """coturn's REST scheme, against a credential openssl computed from its definition."""
    assert turn_password(SECRET, WORKED_USERNAME) == WORKED_PASSWORD
    servers = turn_credentials(SECRET, "dev-4f2a9c", NOW, 3600.0, [URL])
    [server] = servers.ice_servers
    assert server.username == WORKED_USERNAME  # floor(NOW + 3600): 1700003600
    assert server.credential.get_secret_value() == WORKED_PASSWORD
    assert server.urls == [URL] and servers.ttl_s == 3600.0


@given(secret=st.binary(min_size=1, max_size=64), device_id=DEVICE_IDS,
       now=st.floats(0, 4e9), ttl_s=st.floats(1, 7 * 86400))
def test_every_credential_is_the_hmac_of_its_username(secret: bytes, device_id: str,
                                                      now: float, ttl_s: float) -> None:
    """The password is base64(HMAC-SHA1(secret, username)) for any secret and device (the
    digest computed here with hmac, from the scheme's words), and the username's expiry is
    the last whole second within the TTL: never later than asked, less than a second short."""
    [server] = turn_credentials(secret, device_id, now, ttl_s, [URL]).ice_servers
    digest = hmac.new(secret, server.username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(server.credential.get_secret_value()) == digest
    expiry = expiry_of(server.username)
    assert server.username == f"{expiry}:{device_id}"
    assert now + ttl_s - 1 < expiry <= now + ttl_s


def test_a_later_mint_expires_later_and_devices_get_their_own() -> None:
    """Each credential names its device, and one minted later expires later (coturn reads
    the expiry from the username: RFC 8489 §9.2 has no other place for it)."""
    [first] = turn_credentials(SECRET, "dev-a", NOW, 600.0, [URL]).ice_servers
    [later] = turn_credentials(SECRET, "dev-a", NOW + 5, 600.0, [URL]).ice_servers
    [other] = turn_credentials(SECRET, "dev-b", NOW, 600.0, [URL]).ice_servers
    assert expiry_of(later.username) == expiry_of(first.username) + 5
    assert other.username.endswith(":dev-b") and other.credential != first.credential
    [rekeyed] = turn_credentials(b"another secret", "dev-a", NOW, 600.0, [URL]).ice_servers
    assert rekeyed.username == first.username
    assert rekeyed.credential.get_secret_value() != first.credential.get_secret_value()


def test_the_expiry_is_read_as_coturn_reads_it() -> None:
    """The digits before the first separator; a device id may hold ':' itself."""
    assert expiry_of("1700003600:dev:with:colons") == 1700003600
    for bad in ("dev-a", "dev:1700003600", ":dev", "１２:dev"):
        with pytest.raises(ValueError) as caught:
            expiry_of(bad)
        assert str(caught.value) == "a TURN REST username is <unix expiry>:<id>"


def test_nothing_to_mint_without_a_server_or_a_secret() -> None:
    """No TURN configured is the route's 404 turn_unavailable; a TTL under a second (or
    not a number) is a caller's mistake."""
    for secret, urls in ((SECRET, []), (b"", [URL])):
        with pytest.raises(TurnUnavailable) as unavailable:
            turn_credentials(secret, "dev-a", NOW, 3600.0, urls)
        assert str(unavailable.value) == "this cloud has no TURN server configured"
        assert unavailable.value.code == "turn_unavailable"
    for ttl in (0.0, 0.5, math.nan, math.inf):
        with pytest.raises(ValueError) as refused:
            turn_credentials(SECRET, "dev-a", NOW, ttl, [URL])
        assert str(refused.value) == "a TURN credential lives at least one second"


def test_no_secret_in_reprs_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    """The credential is written in the JSON body (the device needs it) and nowhere else:
    not in repr, str or a log line of the model; the shared secret is in none of them,
    nor in an error."""
    servers = turn_credentials(SECRET, "dev-4f2a9c", NOW, 3600.0, [URL])
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("cloud.turn").info("minted %s (%r)", servers, servers)
    shown = [repr(servers), str(servers), repr(servers.ice_servers[0]), caplog.text,
             str(servers.model_dump())]
    for text in shown:
        assert WORKED_PASSWORD not in text and SECRET.decode() not in text
    assert f'"credential":"{WORKED_PASSWORD}"' in servers.model_dump_json()
    assert SECRET.decode() not in servers.model_dump_json()
    with pytest.raises(TurnUnavailable) as caught:
        turn_credentials(SECRET, "dev-a", NOW, 3600.0, [])
    assert SECRET.decode() not in str(caught.value) + repr(caught.value)


def test_the_body_keeps_to_turn_uris() -> None:
    """``urls`` are TURN URIs (RFC 7065 §3.1) and the answer round-trips through JSON."""
    servers = turn_credentials(SECRET, "dev-4f2a9c", NOW, 3600.0,
                               [URL, "turn:[2001:db8::1]:3478?transport=udp"])
    again = IceServers.model_validate_json(servers.model_dump_json())
    assert again.ice_servers[0].urls == servers.ice_servers[0].urls
    assert again.ice_servers[0].credential.get_secret_value() == WORKED_PASSWORD
    for url in ("https://turn.example", "stun:turn.example:3478",
                "turns:turn.example:443?transport=sctp", "turn:"):
        with pytest.raises(ValidationError):
            IceServer(urls=[url], username=WORKED_USERNAME,
                      credential=SecretStr(WORKED_PASSWORD))


# ----------------------------------------------------------------- the cloud's settings


@pytest.fixture(autouse=True)
def _no_turn_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings tests start from an environment that sets no TURN variable."""
    for name in ("PINHOLE_TURN_URL", "PINHOLE_TURN_SECRET", "PINHOLE_TURN_SECRET_FILE",
                 "PINHOLE_TURN_TTL_S"):
        monkeypatch.delenv(name, raising=False)


def _parse(*argv: str) -> cloud_settings.CloudSettings:
    return cloud_settings.parse(list(argv))


def test_the_settings_take_urls_and_the_secret_from_a_file(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """``--turn-url`` repeats (comma-separated in ``PINHOLE_TURN_URL``), the secret comes
    from ``--turn-secret-file`` and is masked in the start-up log, the TTL is an hour."""
    secret = tmp_path / "turn-secret"
    secret.write_text("north-wind-7\n")
    settings = _parse("--turn-url", URL, "--turn-url", "turn:198.51.100.7:3478",
                      "--turn-secret-file", str(secret))
    assert settings.turn_url == (URL, "turn:198.51.100.7:3478")
    assert settings.turn_secret == "north-wind-7" and settings.turn_ttl_s == 3600.0
    assert settings.masked()["turn_secret"] == "****"
    assert "north-wind-7" not in repr(settings)
    monkeypatch.setenv("PINHOLE_TURN_URL", f"{URL},turn:198.51.100.7")
    monkeypatch.setenv("PINHOLE_TURN_SECRET", "north-wind-7")
    assert _parse().turn_url == (URL, "turn:198.51.100.7")


@pytest.mark.parametrize(("argv", "environ", "message"), [
    (("--turn-url", URL), {}, "--turn-url needs the secret shared with that TURN server"),
    ((), {"PINHOLE_TURN_SECRET": "north-wind-7"}, "a TURN secret is set but no --turn-url"),
    (("--turn-url", "https://turn.example"), {"PINHOLE_TURN_SECRET": "x"},
     "--turn-url https://turn.example is not a TURN URL"),
    (("--turn-secret", "north-wind-7"), {},
     "--turn-secret on the command line is visible to every user in ps"),
])
def test_half_a_turn_configuration_is_a_usage_failure(
        argv: tuple[str, ...], environ: dict[str, str], message: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A URL without the secret (or the reverse) would answer 500s or nothing: refused at
    start, exit 2, naming what is missing; the secret is never taken from the command line."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(Failure) as caught:
        _parse(*argv)
    assert caught.value.message == message and caught.value.exit_code == 2
