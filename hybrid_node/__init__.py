"""Pinhole hybrid media node: an on-prem media node that only ever connects outward.

Seeds: "This node is a virtual image that you can install in the local
network", "even behind Network Address Translation (NAT)"; it "always
initiates any needed connections" and "uses the same ports and protocols as
the Cisco Spark app when it talks to the cloud". It is ``media_node``'s
service started with this package's settings (an organisation, the org's
hybrid node secret) and its dialler (cascades from UDP source ports
33434-33598, to UDP 5004, then TCP 5004, then TLS 443). Org scope, local-first
assignment and cascades out are the cloud's side (``cloud.assignment``,
``cloud.cascades``), driven by the ``kind``/``org`` it registers with, and by its
``--cluster`` (the org's nodes of one site: a full node's meeting goes on on another
node of the cluster, joined by a cascade inside the premises) and ``--overflow-rtt-ms``
(a device at least that far from the cluster is placed on the cloud).
"""

from hybrid_node.dial import HYBRID_LADDER, HYBRID_PORTS, hybrid_dialler
from hybrid_node.settings import parse, parse_ports

__all__ = ["HYBRID_LADDER", "HYBRID_PORTS", "hybrid_dialler", "parse", "parse_ports"]
