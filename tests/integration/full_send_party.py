"""The UDP listener against a send buffer that stays full, run inside a namespace.

``python -m tests.integration.full_send_party --bind A --to B --packets N`` binds
the node's own UDP listener to ``A`` and sends ``N`` packets of 172 bytes to
``B`` through it as the relay does, faster than the egress carries them (the
test shapes it with ``tc tbf``). Prints one JSON line: what the engine dropped
and what the port's queue holds. Only a send the kernel refused with EAGAIN
reaches either, so both being above zero also proves the fault was real. With
``--lift DEV`` it then removes DEV's shaper, as an egress that recovers, and
waits for the port's queue to drain: ``drained`` and what the port sent from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from edge import measure
from media_node.engine import Engine
from media_node.listeners import bind_udp
from tests.waiting import until
from wire.transports import RungName


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bind", required=True)
    p.add_argument("--to", required=True)
    p.add_argument("--packets", type=int, default=5000)
    p.add_argument("--lift", default="", help="then remove this device's shaper")
    a = p.parse_args()
    engine = Engine("full-send", stun_rate=0)
    listener = await bind_udp(engine, a.bind, 0, RungName.UDP_5004, 0.0)
    for i in range(a.packets):
        listener.send(b"\x80" + bytes(171), (a.to, 9))
        if i % 500 == 0:
            await asyncio.sleep(0)  # the loop runs: the port may send what it can
    held = listener.queued
    dropped = engine.drops.get("udp_send_full", 0)
    result: dict[str, object] = {"held_bytes": held, "dropped": dropped}
    if a.lift:
        tc = await asyncio.create_subprocess_exec("tc", "qdisc", "del", "dev", a.lift, "root")
        assert await tc.wait() == 0
        await until(lambda: listener.queued == 0, "the port's queue drained", timeout_s=30)
        result.update(drained=listener.queued == 0,
                      dropped_after=engine.drops.get("udp_send_full", 0) - dropped)
    print(json.dumps(result), flush=True)
    listener.close()
    return 0


if __name__ == "__main__":
    measure.start_if_asked(os.environ)  # under make test, as a Pinhole command does
    sys.exit(asyncio.run(main()))
