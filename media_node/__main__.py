"""``pinhole-media-node`` / ``python -m media_node``: run a media node."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

import uvloop

from edge import boundary
from media_node.cascade import Dialler
from media_node.service import run
from media_node.settings import NodeSettings, parse


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (never key material)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"ts": self.formatTime(record), "level": record.levelname,
                           "logger": record.name, "msg": record.getMessage()})


def main(argv: Sequence[str] | None = None, *, prog: str = "pinhole-media-node",
         parse_settings: Callable[[Sequence[str]], NodeSettings] = parse,
         dialler: Callable[[NodeSettings], Dialler] | None = None) -> int:
    """The error boundary (the hybrid node runs through it too, with its own ``prog``,
    settings and ``dialler``): a failure is one line and an exit code of :mod:`edge.boundary`."""
    raw = list(sys.argv[1:] if argv is None else argv)

    def body() -> int:
        settings = parse_settings(raw)
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter() if settings.log_format == "json" else
                             logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logging.basicConfig(level=logging.INFO, handlers=[handler])
        logging.getLogger("media_node").info("settings %s", settings.masked())
        return uvloop.run(run(settings, dialler(settings) if dialler is not None else None))

    return boundary.run(prog, body, as_json=lambda: False, out=sys.stdout, err=sys.stderr,
                        traceback_wanted=boundary.traceback_wanted(os.environ))


if __name__ == "__main__":
    sys.exit(main())
