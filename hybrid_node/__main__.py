"""``pinhole-hybrid-node`` / ``python -m hybrid_node``: run a hybrid media node."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import uvloop

from hybrid_node.dial import hybrid_dialler
from hybrid_node.settings import parse
from media_node.log_format import configure
from media_node.service import run


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(argv)
    configure(settings.node.log_format)
    logging.getLogger("media_node").info("hybrid node settings %s", settings.masked())
    dial = hybrid_dialler(settings.cascade_ports, local_host=settings.node.bind,
                          delay_s=settings.node.simulated_rtt_ms / 1000)
    return uvloop.run(run(settings.node, dial))


if __name__ == "__main__":
    sys.exit(main())
