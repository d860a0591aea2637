"""``pinhole-media-node`` / ``python -m media_node``: run a media node."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence

import uvloop

from media_node.service import run
from media_node.settings import parse


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (never key material)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"ts": self.formatTime(record), "level": record.levelname,
                           "logger": record.name, "msg": record.getMessage()})


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("media_node").info("settings %s", settings.masked())
    return uvloop.run(run(settings))


if __name__ == "__main__":
    sys.exit(main())
