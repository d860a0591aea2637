"""The media rules ``pinhole netcheck`` prints: one row per rung in one table.

The rules were an if-chain over rung strings; they are a table keyed by
:class:`~wire.transports.RungName`. These are the commands the chain printed for every
rung (the legacy ``udp/9000`` row was pinned by no other test), so the table is the
same rules, not new ones.
"""

from __future__ import annotations

import pytest

from client.firewall_rules import MEDIA_RULES, RuleFormat, media, render
from wire.transports import RungName, Transport, rung

NODES = ["192.0.2.1", "192.0.2.2"]
TO = "ip daddr { 192.0.2.1, 192.0.2.2 } "

# (rung, port, its nft command or None, its iptables command or None)
EXPECTED = [
    (RungName.UDP_5004, 5004, "udp dport 5004", "-p udp --dport 5004"),
    (RungName.UDP_9000, 9000, TO + "udp dport 9000", "-p udp -d 192.0.2.1,192.0.2.2 --dport 9000"),
    (RungName.TCP_5004, 5004, TO + "tcp dport 5004", "-p tcp -d 192.0.2.1,192.0.2.2 --dport 5004"),
    (RungName.TLS_443, 443, TO + "tcp dport 443", "-p tcp -d 192.0.2.1,192.0.2.2 --dport 443"),
    (RungName.UDP_33434, 33434, None, None),  # a last resort: a note, never a command
]


@pytest.mark.parametrize(("name", "port", "nft", "ipt"), EXPECTED)
def test_each_rung_renders_the_commands_it_always_did(
    name: RungName, port: int, nft: str | None, ipt: str | None
) -> None:
    rule = media(name, NODES, port)
    assert rule.key == name.value
    nft_lines = render([rule], RuleFormat.NFT)[3:]
    ipt_lines = render([rule], RuleFormat.IPTABLES)[3:]
    assert nft_lines == ([] if nft is None else
                         [f"nft add rule inet filter forward {nft} ct state new accept"])
    assert ipt_lines == ([] if ipt is None else
                         [f"iptables -A FORWARD {ipt} -m conntrack --ctstate NEW -j ACCEPT"])


def test_every_rung_a_firewall_opens_has_a_row() -> None:
    """The proxy rung goes out through the proxy: no firewall rule, a clear error."""
    assert set(MEDIA_RULES) == {r for r in RungName
                                if rung(r).transport is not Transport.HTTP_PROXY}
    with pytest.raises(ValueError, match="no firewall rule for rung 'http-proxy'"):
        media(RungName.HTTP_PROXY, NODES, 443)
