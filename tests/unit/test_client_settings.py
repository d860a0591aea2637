"""The client's settings: one frozen object from flags and ``PINHOLE_*`` variables.

Defect: ``pinhole`` carried its settings as a ``dict[str, str]`` built inside the
CLI (pins comma-joined, the CA ``""`` or missing), and the proxy, cache and
profile flags were read from the argparse namespace wherever they were needed;
the services each had one frozen settings object (``cloud/settings.py``,
``media_node/settings.py``). Now ``client.cli.from_args`` builds a frozen
``ClientSettings`` once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from client import cli
from client.cli import ClientSettings
from edge.boundary import ExitCode, Failure
from edge.flags import apply_environment
from wire.transports import DeviceProfile

PIN_A = "sha256/" + "A" * 43 + "="
PIN_B = "sha256/" + "B" * 43 + "="


def _settings(argv: Sequence[str], environ: Mapping[str, str] | None = None
              ) -> ClientSettings:
    parser = cli._parser()
    apply_environment(parser, environ or {})
    return cli.from_args(parser.parse_args(list(argv)))


def test_flags_make_one_frozen_object() -> None:
    s = _settings(["--cloud", "https://127.0.0.1:8443", "--org", "acme", "--enrollment-key",
                   "k-1", "--pin", PIN_A, "--pin", PIN_B, "--profile", "mobile", "--no-cache",
                   "register"])
    assert (s.cloud, s.org, s.enrollment_key) == ("https://127.0.0.1:8443", "acme", "k-1")
    assert s.pin_flags == (PIN_A, PIN_B) and s.profile is DeviceProfile.MOBILE and s.no_cache
    assert s.pins(s.pin_store()).source == "--pin"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.cloud = "https://elsewhere"  # type: ignore[misc]


def test_variables_fill_in_and_a_flag_wins() -> None:
    environ = {"PINHOLE_CLOUD": "https://192.0.2.1", "PINHOLE_ORG": "acme",
               "PINHOLE_ENROLLMENT_KEY": "k-env", "PINHOLE_FORCE_PROBE": "1",
               "PINHOLE_PIN": f"{PIN_A},{PIN_B}"}
    s = _settings(["--org", "globex", "probe"], environ)
    assert (s.cloud, s.org, s.enrollment_key) == ("https://192.0.2.1", "globex", "k-env")
    assert s.force_probe and s.pin_flags == (PIN_A, PIN_B)


def test_secrets_are_masked_and_kept_out_of_repr() -> None:
    s = _settings(["--cloud", "https://192.0.2.1", "--org", "acme", "--enrollment-key",
                   "k-secret", "--proxy-user", "u", "--proxy-password", "p-secret",
                   "register"])
    assert s.masked()["enrollment_key"] == "****" and s.masked()["proxy_password"] == "****"
    assert "secret" not in repr(s)
    assert s.proxy_credentials == ("u", "p-secret")


def test_a_stack_file_gives_the_cloud_the_ca_beside_it_and_the_pins(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-")
    stack = tmp_path / "stack.json"
    stack.write_text('{"cloud": "https://127.0.0.1:8443", "ca": "ca.pem", '
                     f'"pins": ["{PIN_A}"], '
                     '"orgs": {"acme": {"enrollment_key": "k-stack"}}}')
    s = _settings(["--stack", str(stack), "register"])
    assert s.ca == str(tmp_path / "ca.pem") and s.enrollment_key == "k-stack"
    assert s.stack_pins == (PIN_A,)
    assert s.pins(None).pins == (PIN_A,) and "stack.json" in s.pins(None).source


def test_a_missing_setting_is_a_usage_failure_naming_the_flags() -> None:
    with pytest.raises(Failure) as failure:
        _settings(["--cloud", "https://192.0.2.1", "register"])
    assert failure.value.exit_code is ExitCode.USAGE
    assert "--org, --enrollment-key" in str(failure.value)
