"""The media node: STUN responder and symmetric SRTP relay (an SFU) on UDP, TCP and TLS.

It registers with the cloud and keeps a control WebSocket open to it (the node
always connects out); the cloud allocates legs over that channel, and clients
latch them with an authenticated Binding Request (docs/design.md "Media leg").
"""

from media_node.engine import Engine
from media_node.legs import Sink
from media_node.settings import NodeSettings, parse

__all__ = ["Engine", "NodeSettings", "Sink", "parse"]
