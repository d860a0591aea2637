"""The UDP listener against a send buffer that stays full, run inside a namespace.

``python -m tests.integration.full_send_party --bind A --to B --packets N`` binds
the node's own UDP listener to ``A`` and sends ``N`` packets of 172 bytes to
``B`` through it as the relay does, faster than the egress carries them (the
test shapes it with ``tc tbf``). Prints one JSON line: what the engine dropped
and what the port's queue holds. Only a send the kernel refused with EAGAIN
reaches either, so both being above zero also proves the fault was real.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from media_node.engine import Engine
from media_node.listeners import bind_udp
from wire.transports import RungName


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bind", required=True)
    p.add_argument("--to", required=True)
    p.add_argument("--packets", type=int, default=5000)
    a = p.parse_args()
    engine = Engine("full-send", stun_rate=0)
    listener = await bind_udp(engine, a.bind, 0, RungName.UDP_5004, 0.0)
    for i in range(a.packets):
        listener.send(b"\x80" + bytes(171), (a.to, 9))
        if i % 500 == 0:
            await asyncio.sleep(0)  # the loop runs: the port may send what it can
    held = listener.queued
    print(json.dumps({"held_bytes": held,
                      "dropped": engine.drops.get("udp_send_full", 0)}), flush=True)
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
