"""``pinhole-hybrid-node`` / ``python -m hybrid_node``: run a hybrid media node."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from hybrid_node.dial import hybrid_dialler
from hybrid_node.reflector import main as reflector_main
from hybrid_node.settings import PROG, parse
from media_node.__main__ import main as node_main
from media_node.cascade import Dialler
from media_node.settings import NodeSettings


def dialler(settings: NodeSettings) -> Dialler:
    """Cascades from the node's own address and its ``--cascade-ports``."""
    return hybrid_dialler(settings.cascade_ports, local_host=settings.bind,
                          delay_s=settings.simulated_rtt_ms / 1000,
                          consent_interval_s=settings.consent_check_s)


def main(argv: Sequence[str] | None = None) -> int:
    """The node; ``reflector ...``: the checks before enrolling one
    (:mod:`hybrid_node.reflector`)."""
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["reflector"]:
        return reflector_main(raw[1:])
    return node_main(raw, prog=PROG, parse_settings=parse, dialler=dialler)


if __name__ == "__main__":
    sys.exit(main())
