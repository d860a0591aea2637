"""``make bench`` / ``python -m bench``: run every benchmark; one JSON document on stdout."""

from __future__ import annotations

import contextlib
import io
import json
import sys

from bench import join, probe, relay


def main() -> int:
    results = {}
    for name, module in (("relay", relay), ("join", join), ("probe", probe)):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            module.main([])
        results[name] = json.loads(out.getvalue())
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
