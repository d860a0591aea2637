"""The media node's STUN responder, alone in a process, for ``bench/stun.py``.

The service's own :class:`~media_node.engine.Engine` behind its own UDP
listener on uvloop, with one leg allocated as the cloud would (ICE
``ufrag``/``pwd`` below), so that a discovery probe takes the production
discovery path and an authenticated Binding Request the leg-binding path
(validate, latch, answer with MESSAGE-INTEGRITY). The per-source limit on
unauthenticated STUN is off (``stun_rate=0``): one generator is one source.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import uvloop
from pydantic import SecretStr

from edge import heap
from media_node.engine import Engine
from media_node.listeners import bind_udp
from wire.models import AllocateLeg, IceCredentials, SrtpParams
from wire.srtp import SrtpKeys, SrtpProfile
from wire.transports import UDP_5004

NODE_UFRAG = "benchnode"
CLIENT_UFRAG = "benchclient"
PWD = "bench+ice+password+0123456789"


async def serve(port: int) -> None:
    engine = Engine("bench-node", stun_rate=0)
    await bind_udp(engine, "127.0.0.1", port, UDP_5004.name, 0.0)
    profile = SrtpProfile.AES_CM_128_HMAC_SHA1_80
    command = AllocateLeg(
        request_id="leg", leg_id="leg", meeting_id="bench", participant_id="p", ssrc=1,
        ice=IceCredentials(node_ufrag=NODE_UFRAG, client_ufrag=CLIENT_UFRAG,
                           pwd=SecretStr(PWD)),
        srtp=SrtpParams(profile=profile.value,
                        client_to_node=SecretStr(SrtpKeys.generate(profile).to_b64()),
                        node_to_client=SecretStr(SrtpKeys.generate(profile).to_b64())))
    assert engine.allocate(command, time.monotonic()).ok
    heap.settle()  # as the service does once started
    print("ready", flush=True)
    await asyncio.Event().wait()


def main() -> int:
    p = argparse.ArgumentParser(description="the media node's STUN path, for bench/stun.py")
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    uvloop.run(serve(a.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
