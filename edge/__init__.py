"""The asyncio floor above ``wire``: I/O that the client and the nodes share.

``wire`` stays sans-I/O; the services (``client``, ``media_node``, ``cloud``)
never import each other. What a participant's client and a node dialling a
cascade both do with sockets lives here: :mod:`edge.leg_transport`.
"""

from edge.leg_transport import (
    LegLink,
    LegPath,
    check_pin,
    open_over_tunnel,
    open_stream,
    open_udp,
)

__all__ = ["LegLink", "LegPath", "check_pin", "open_over_tunnel", "open_stream", "open_udp"]
