"""The media node's relay path with many meetings, alone in a process, for ``bench/capacity.py``.

As in ``bench/relay_node.py`` (the service's own engine, UDP listener and compiled
data plane on uvloop, legs set up by its :func:`~bench.relay_node.add_leg`), but
with ``--participants`` legs in meetings of ``--meeting-size``, every one of them
sending: participant ``i``'s leg has SSRC ``SSRC_BASE + i`` and is latched to
:func:`participant_address` (the load generator's one socket sends from, and
receives on, every such address). All uplinks share one key, which costs the node
nothing: each leg still has its own libsrtp session. ``ready`` on stdout once every
leg is routed; with ``--participants 0`` the node has no legs (a memory baseline).
The engine's capacity is set to the legs asked for, so only the machine limits them.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
import time

import uvloop

from bench.relay_node import add_leg, listen
from edge import heap
from media_node.engine import Engine

ADDR_BASE = "127.1.0.1"  # srtp_loadgen.c --addr-base
SSRC_BASE = 0x10000  # srtp_loadgen.c --ssrc-base


def participant_address(i: int, port: int) -> tuple[str, int]:
    """Where participant ``i`` sends from and its leg is latched."""
    return (str(ipaddress.IPv4Address(ADDR_BASE) + i), port)


async def serve(port: int, sink_port: int, key_in: bytes, participants: int,
                meeting_size: int) -> None:
    engine = Engine("bench-node", capacity=max(1, participants), stun_rate=0)
    listener = await listen(engine, port)
    now = time.monotonic()
    for i in range(participants):
        add_leg(engine, listener, f"leg{i}", f"meeting{i // meeting_size}", SSRC_BASE + i, key_in,
                participant_address(i, sink_port), now)
    assert engine.plane.routes == participants, "every leg is relayed by the data plane"
    heap.settle()  # as the service does once started
    print("ready", flush=True)
    await asyncio.Event().wait()


def main() -> int:
    p = argparse.ArgumentParser(description="the media node's relay path with many meetings, "
                                            "for bench/capacity.py")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sink-port", type=int, required=True,
                   help="the port of every participant's address")
    p.add_argument("--key", required=True, help="the participants' SRTP master key+salt, hex")
    p.add_argument("--participants", type=int, default=0, help="legs, every one sending (0)")
    p.add_argument("--meeting-size", type=int, default=5, help="legs per meeting (5)")
    a = p.parse_args()
    uvloop.run(serve(a.port, a.sink_port, bytes.fromhex(a.key), a.participants,
                     a.meeting_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
