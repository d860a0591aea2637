"""``pinhole-lab``: run Pinhole — the loopback stack and the demo (no root)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop

from lab import demo
from lab.stack import running_stack


async def _stack(state_dir: Path, prefix: str | None) -> int:
    async with running_stack(state_dir=state_dir, progress=print, prefix=prefix) as stack:
        print(json.dumps(stack.describe(), indent=2), flush=True)
        print("stack running; Ctrl-C stops it", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pinhole-lab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("stack", help="run a cloud and three regional media nodes on loopback")
    s.add_argument("--state-dir", type=Path, default=Path("run/stack"),
                   help="where certificates, logs and stack.json go (default run/stack)")
    s.add_argument("--prefix", default=None,
                   help="first three octets for the cloud (.1) and nodes (.2-.4), e.g. "
                   "198.18.0 inside the firewall lab (default: a free 127.x.y block)")
    d = sub.add_parser("demo", help="stack + a scripted two-party meeting, narrated")
    d.add_argument("--seconds", type=float, default=3.0, help="how long the parties talk")
    d.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = p.parse_args(argv)
    if args.command == "stack":
        return uvloop.run(_stack(args.state_dir, args.prefix))
    return uvloop.run(demo.run(args.seconds, as_json=args.json))


if __name__ == "__main__":
    sys.exit(main())
