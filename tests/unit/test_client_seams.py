"""Seams of the client library: no pair of modules that import each other, one pin check.

Defect: ``client/probe.py`` imported ``client/inspection.py`` (for the probe's own
error text) and ``client/inspection.py`` imported ``client/probe.py`` back, under
``if TYPE_CHECKING:``, which tests/unit/test_import_graph.py leaves out: two
modules that could only be read together. Here every import counts.

Defect: the cloud's SPKI pin was compared in two places (``client/api.py`` in the
handshake, ``client/netcheck.py`` in its TLS check) and a media node's
certificate fingerprint in two more (``client/probe.py``, ``wire/leg_client.py``),
each its own way. Now ``wire.tls.check_pins`` is the one comparison (RFC 7469
§2.4 SPKI pins; RFC 8122 §5 fingerprints).
"""

from __future__ import annotations

import ast
import datetime
from pathlib import Path

from wire.tls import cert_fingerprint, check_pins, issue, make_ca, spki_pin

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_no_two_client_modules_import_each_other_in_any_form() -> None:
    modules = {f"client.{p.stem}": _imports(p) for p in (ROOT / "client").glob("*.py")
               if p.stem != "__init__"}
    pairs = sorted((a, b) for a in modules for b in modules
                   if a < b and b in modules[a] and a in modules[b])
    assert pairs == []


NOW = datetime.datetime.now(datetime.UTC)
CA = make_ca(NOW)
CLOUD = issue(CA, ["127.0.0.1"], NOW)
OTHER = issue(CA, ["127.0.0.1"], NOW)


def test_spki_pins_match_the_key_primary_or_backup() -> None:
    pin, other = spki_pin(CLOUD.cert_pem), spki_pin(OTHER.cert_pem)
    assert check_pins(CLOUD.cert_pem, [other, pin]).matched
    refused = check_pins(CLOUD.cert_pem, [other])
    assert not refused.matched and refused.seen == pin


def test_a_fingerprint_pin_matches_the_certificate_only() -> None:
    fingerprint = cert_fingerprint(CLOUD.cert_pem)
    assert check_pins(CLOUD.cert_pem, [fingerprint]).matched
    refused = check_pins(OTHER.cert_pem, [fingerprint])
    assert not refused.matched and refused.seen == cert_fingerprint(OTHER.cert_pem)


def test_no_pins_check_nothing_and_say_what_was_seen() -> None:
    unpinned = check_pins(CLOUD.cert_pem, [])
    assert unpinned.matched and unpinned.seen == spki_pin(CLOUD.cert_pem)
