"""Pinhole's own client behind four enterprise firewalls: the transport each call ends on.

Copy this file into your project and replace the ``pinhole`` command with your client: the
``pinhole_lab`` fixture (Pinhole's pytest plugin, installed with Pinhole) starts a cloud and
media nodes, puts an enterprise network with the named firewall profile in front of them,
runs your command inside that network with what it needs to join in its environment
(``PINHOLE_CLOUD``, ``PINHOLE_CA``, ``PINHOLE_MEETING`` …), and shows what happened.
Needs root (network namespaces, nftables); without it the tests skip and say why.

Two parties talk until the cloud shows both latched and their node relayed media between
them; then each is hung up (Ctrl-C) and prints its ``--json`` report.
"""

from __future__ import annotations

import pytest

from lab.testing import Pinhole

# profile -> the transports Pinhole's client may end on there (docs/design.md's lab table)
EXPECTED = {
    "open": {"udp/5004"},
    # TCP 5004 leads and TLS 443 starts one stream step later: a race both can win
    "no-udp": {"tcp/5004", "tls/443"},
    "tls-only": {"tls/443"},
    "proxy-only": {"http-proxy"},  # PINHOLE_PROXY names the enterprise's proxy
}


@pytest.mark.parametrize("pinhole_lab", list(EXPECTED), indirect=True)
def test_pinhole_cli_ends_on_the_transport_the_profile_leaves(pinhole_lab: Pinhole) -> None:
    meeting = pinhole_lab.new_meeting()
    call = ["pinhole", "--json", "call", "--seconds", "600"]  # until hung up
    alice = pinhole_lab.start(call, meeting=meeting, name="alice")
    bob = pinhole_lab.start(call, meeting=meeting, name="bob")
    view = pinhole_lab.wait_for_media(meeting, parties=2)

    reports = [alice.hang_up().json(), bob.hang_up().json()]
    assert pinhole_lab.profile is not None
    for report in reports:
        assert report["transport"] in EXPECTED[pinhole_lab.profile], report["attempts"]
        assert report["packets_received"] > 0 and report["loss"] == 0, report
    # the cloud saw the same legs latched, on one node (a CONNECT tunnel through the proxy
    # ends on the node's TLS 443: that is the rung the node latched)
    seen = {p.id: str(p.transport) for p in view.participants}
    for report in reports:
        node_side = "tls/443" if report["transport"] == "http-proxy" else report["transport"]
        assert seen[report["participant_id"]] == node_side, (seen, report["participant_id"])
    # on one node, or on two that a cascade joins: the second party's best node is another
    # when it is nearer by more than a cascade costs (30 ms, docs/design.md "Assignment"),
    # as round trips measured on a busy machine can make it
    nodes = {p.node_id for p in view.participants}
    cascaded = {frozenset((link.from_node, link.to_node)) for link in view.cascades}
    assert len(nodes) == 1 or frozenset(nodes) in cascaded, (nodes, view.cascades)
