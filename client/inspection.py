"""TLS inspection named in every shape it takes, for the cloud and for media nodes.

The seeds ask enterprises to "disable HTTPS traffic inspection" for the
service: a box that re-signs TLS breaks pinning. It shows itself in several
ways, and each gets the same true diagnosis, "TLS inspection of <names>;
exempt them", instead of a library's error text:

- the box re-signs with a CA this device does not trust: certificate
  verification fails (``SSLCertVerificationError``);
- the box re-signs with a CA the device trusts: the cloud's public key is
  not one of the pins from the enrollment material (RFC 7469 §2.6), or a
  media node's certificate is not the one the node list publishes;
- the box reads the ClientHello and cuts the connection (a reset or an EOF
  inside the handshake, after TCP connected);
- every node's TLS rung was re-signed, so no transport was left and the
  cloud answers ``503 no_media_node``: the probe outcomes say why.

:func:`inspection_findings` is what a network check calls with the probe
outcomes and the cloud's error, to print next to its firewall rules.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Sequence

import aiohttp

from client.probe import FINGERPRINT_MISMATCH as FINGERPRINT_MISMATCH
from client.probe import ProbeOutcome


def inspection_message(names: Sequence[str], seen: str) -> str:
    """The one diagnosis: which names or addresses are inspected, what was seen."""
    listed = ", ".join(dict.fromkeys(names))  # in order, once each
    return f"TLS inspection of {listed}: {seen}; exempt them from HTTPS inspection"


def repin_hint() -> str:
    return ("if the cloud's key was really rotated, re-pin from the new enrollment material: "
            "pinhole pin --from-stack NEW-stack.json")


def pin_mismatch(host: str, seen: str, pins: Sequence[str]) -> str:
    """The cloud presented a key that is none of the enrollment material's pins."""
    return inspection_message([host], f"it presented public key {seen}, which is none of the "
                              f"pins of the enrollment material ({', '.join(pins)})") \
        + "; " + repin_hint()


def node_certificate_mismatch(node: str, where: str, seen: str, expected: str) -> str:
    """A media node's TLS certificate is not the one the node list publishes."""
    return inspection_message([f"media node {node} ({where})"],
                              f"it presented certificate {seen}, not the node list's {expected}")


def diagnose_connection(exc: BaseException, host: str) -> str | None:
    """The inspection diagnosis for an error connecting to ``host`` over TLS, or None.

    An untrusted certificate stays the library's error: it may as well be a wrong CA;
    the CLI's failure names both (``client.failures``).
    """
    if isinstance(exc, aiohttp.ClientConnectorError) and exc.ssl is not False \
            and _cut_in_handshake(exc.os_error):
        return inspection_message([host], "the connection was cut during the TLS handshake, "
                                  "after the ClientHello (a box that inspects or blocks TLS)")
    return None


def _cut_in_handshake(error: BaseException | None) -> bool:
    return isinstance(error, ConnectionResetError | ssl.SSLEOFError | ssl.SSLZeroReturnError) \
        or (isinstance(error, ssl.SSLError) and not isinstance(error,
                                                                ssl.SSLCertVerificationError))


def inspected_nodes(outcomes: Iterable[ProbeOutcome]) -> list[str]:
    """``media node N (address:port)`` of every probe whose TLS certificate was re-signed."""
    return [f"media node {o.target.node_id} ({o.target.address.host}:{o.target.address.port})"
            for o in outcomes if o.error == FINGERPRINT_MISMATCH]


def inspection_findings(outcomes: Iterable[ProbeOutcome], cloud_error: str | None = None
                        ) -> list[str]:
    """Every inspection a network check saw: of the cloud (its error) and of media nodes."""
    found = []
    if cloud_error and cloud_error.startswith("TLS inspection of "):
        found.append(cloud_error)
    nodes = inspected_nodes(outcomes)
    if nodes:
        found.append(inspection_message(nodes, "their TLS certificates are not the ones the "
                                        "node list publishes"))
    return found
