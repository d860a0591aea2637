"""``make bench`` / ``python -m bench``: run every benchmark; JSON on stdout."""

from __future__ import annotations

import sys

from bench import relay

if __name__ == "__main__":
    sys.exit(relay.main(sys.argv[1:]))
