"""The real media-node relay path, alone in a process, for ``bench/relay.py``.

It runs the service's own :class:`~media_node.engine.Engine` behind its own
UDP listener and data plane on uvloop, with one meeting of ``1 + receivers`` legs: the
sender's leg latched to the load generator's source address, receiver ``i``'s
to ``127.0.0.(2+i):SINK`` (the generator's one sink socket, bound to every
address). Latching is done directly (the generator speaks no STUN);
every packet then takes the production path: the route the engine installs
in the plane on latching, then demux, leg lookup by 5-tuple, SRTP
authenticate + decrypt, SSRC check, re-protect, sendto, and the sampled
relay-latency histogram the service keeps.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import time

import uvloop
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from edge import heap
from media_node.engine import Engine
from media_node.listeners import UdpListener, bind_udp
from media_node.metrics import RelayTiming
from wire.models import AllocateLeg, IceCredentials, SrtpParams
from wire.srtp import SrtpKeys, SrtpProfile
from wire.transports import UDP_5004

SSRC = 0x11223344  # the load generator's
PROFILE = SrtpProfile.AES_CM_128_HMAC_SHA1_80


def receiver_address(i: int, sink_port: int) -> tuple[str, int]:
    """Where receiver ``i`` is latched (the C relay sends to the same addresses)."""
    return (f"127.0.0.{2 + i}", sink_port)


async def listen(engine: Engine, port: int) -> UdpListener:
    """The node's UDP listener on ``port``, timed one packet in 16 as the service's are."""
    return await bind_udp(engine, "127.0.0.1", port, UDP_5004.name, 0.0,
                          RelayTiming(CollectorRegistry(), plane=engine.plane.timing))


def add_leg(engine: Engine, listener: UdpListener, name: str, meeting: str, ssrc: int,
            key_in: bytes, addr: tuple[str, int], now: float) -> None:
    """Allocate leg ``name`` as the cloud asks the node to (uplink key ``key_in``, a
    downlink key of its own) and latch it to ``addr`` on ``listener``."""
    command = AllocateLeg(
        request_id=name, leg_id=name, meeting_id=meeting, participant_id=name, ssrc=ssrc,
        ice=IceCredentials(node_ufrag=f"{name}n", client_ufrag=f"{name}c",
                           pwd=SecretStr("bench+password+0123456789")),
        srtp=SrtpParams(profile=PROFILE.value,
                        client_to_node=SecretStr(base64.b64encode(key_in).decode()),
                        node_to_client=SecretStr(SrtpKeys.generate(PROFILE).to_b64())))
    assert engine.allocate(command, now).ok
    engine.latch_outbound(engine.legs[name], listener, addr, now)


async def serve(port: int, src_port: int, sink_port: int, key_in: bytes, receivers: int) -> None:
    engine = Engine("bench-node", stun_rate=0)
    listener = await listen(engine, port)
    now = time.monotonic()
    add_leg(engine, listener, "sender", "bench", SSRC, key_in, ("127.0.0.1", src_port), now)
    for i in range(receivers):
        add_leg(engine, listener, f"receiver{i}", "bench", 1 + i,
                SrtpKeys.generate(PROFILE).master, receiver_address(i, sink_port), now)
    assert engine.plane.routes == 1 + receivers, "every leg is relayed by the data plane"
    heap.settle()  # as the service does once started
    print("ready", flush=True)
    await asyncio.Event().wait()


def main() -> int:
    p = argparse.ArgumentParser(description="the media node's relay path, for bench/relay.py")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--src-port", type=int, required=True)
    p.add_argument("--sink-port", type=int, required=True)
    p.add_argument("--key", required=True, help="sender's SRTP master key+salt, hex")
    p.add_argument("--receivers", type=int, default=1, help="legs that hear the sender (1)")
    a = p.parse_args()
    uvloop.run(serve(a.port, a.src_port, a.sink_port, bytes.fromhex(a.key), a.receivers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
