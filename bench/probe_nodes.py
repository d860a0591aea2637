"""Many media nodes' data planes in one process, for ``bench/probe.py``.

Each node is the service's own engine and listeners (UDP 5004 and 33434, TCP
5004, TLS 443) on its own loopback address ``PREFIX.<n>``; one generated TLS
certificate serves them all. Prints the node list as JSON, then serves until
stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

import uvloop

from media_node.engine import Engine
from media_node.service import admission_for, start_listeners
from media_node.settings import NodeSettings
from wire.models import NodeInfo


async def serve(count: int, prefix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        nodes, closers = [], []
        cert = key = ""
        for n in range(count):
            address = f"{prefix}.{n // 250}.{n % 250 + 2}"
            settings = NodeSettings(cloud="https://unused", node_id=f"node-{n}",
                                    advertise=address, cert=cert, key=key, stun_rate=0)
            engine = Engine(settings.node_id, stun_rate=0)
            endpoints, fingerprint, more = await start_listeners(settings, engine, Path(tmp),
                                                                    admission_for(settings))
            if not cert:  # the first node generated a certificate: all share it
                cert, key = str(Path(tmp) / "node.pem"), str(Path(tmp) / "node.key")
            closers += more
            nodes.append(NodeInfo(id=settings.node_id, kind="cloud", region="bench",
                                  address=address, endpoints=endpoints,
                                  fingerprint=fingerprint).model_dump(mode="json"))
        print(json.dumps(nodes), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the bench closes our stdin
        for closer in closers:
            closer.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--prefix", default="127.254",
                   help="first octets of the addresses (the loopback stack uses 127.20-219)")
    a = p.parse_args()
    uvloop.run(serve(a.count, a.prefix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
