"""How a hybrid node dials its cascades: always outward, from the hybrid source-port range.

Seed (requirements page): "Media: Cisco Hybrid Services RTP/SRTP over UDP
5004* 33434-33598**", "RTP/SRTP over TCP 5004* 33434-33598**" (**: "An older
port range of 8000 to 8100 is still supported"). Seed (white paper): "The
Cisco Spark Hybrid Media Node uses the same ports and protocols as the Cisco
Spark app when it talks to the cloud": UDP 5004 first, then TCP 5004, then TLS
443 when the enterprise firewall blocks UDP ("If it fails to connect on UDP, it
can fall back to traverse a firewall using TCP port 5004 and TLS port 443").
"""

from __future__ import annotations

from typing import Final

from media_node.cascade import Cascade, CascadeLink, Dialler
from media_node.engine import Engine
from wire.models import OpenCascade
from wire.transports import TCP_5004, TLS_443, UDP_5004, Rung

#: The cascade's rungs, best first (the app's ladder without the proxy rung).
HYBRID_LADDER: Final[tuple[Rung, ...]] = (UDP_5004, TCP_5004, TLS_443)
#: The hybrid services' source-port range on UDP (requirements page).
HYBRID_PORTS: Final = range(33434, 33599)
#: The older range the requirements page still supports.
LEGACY_HYBRID_PORTS: Final = range(8000, 8101)


def hybrid_dialler(source_ports: range | None = HYBRID_PORTS, *,
                   local_host: str | None = None,
                   delay_s: float = 0.0, consent_interval_s: float = 4.0) -> Dialler:
    """Open each cascade as the hybrid node: its ladder, UDP from ``source_ports`` of
    ``local_host`` (the node's own address)."""

    def dial(engine: Engine, command: OpenCascade) -> Cascade:
        return CascadeLink(engine, command, delay_s=delay_s, ladder=HYBRID_LADDER,
                           source_ports=source_ports, local_host=local_host,
                           consent_interval_s=consent_interval_s)

    return dial
