"""``pinhole-media-node`` / ``python -m media_node``: run a media node."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import uvloop

from media_node.log_format import configure
from media_node.service import run
from media_node.settings import parse


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(argv)
    configure(settings.log_format)
    logging.getLogger("media_node").info("settings %s", settings.masked())
    return uvloop.run(run(settings))


if __name__ == "__main__":
    sys.exit(main())
