"""A stack's node whose UDP port is held on every address for a moment still comes up.

The defect it pins down: UDP 33434 (the seed's last-resort port) lies in the kernel's
ephemeral range, so another program's socket bound to every address (``0.0.0.0``, a
probe's or a call's, with a port the kernel picked) can hold it while a stack starts. A
suite run saw a node exit with "cannot listen on 127.194.119.2: address already in use"
and the stack fail. Now the node's error names the port, and the stack starts the node
again (``lab.stack.BIND_ATTEMPTS``). Here the port is one of the test's own (below the
ephemeral range, given to the node with ``--udp-last-resort-port``), held until the
stack says it tries again: no wait on the clock decides it.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from lab.net import free_port
from lab.stack import NodeSpec, running_stack
from tests.waiting import HANG_S, until


async def test_a_node_whose_port_is_held_on_every_address_is_started_again(
        tmp_path: Path) -> None:
    port = free_port("0.0.0.0")
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("0.0.0.0", port))  # every address: no loopback block escapes it
    said: list[str] = []
    spec = NodeSpec("node-a", "eu", 0, extra_args=("--udp-last-resort-port", str(port)))

    async def release_once_refused() -> None:
        await until(lambda: any("trying again" in line for line in said),
                    "the stack trying the node again", HANG_S)
        holder.close()

    releasing = asyncio.ensure_future(release_once_refused())
    try:
        async with running_stack([spec], state_dir=tmp_path / "stack",
                                 progress=said.append) as stack:
            [node] = stack.nodes
            assert {"rung": "udp/33434", "transport": "udp", "port": port}.items() <= next(
                e for e in node["endpoints"] if e["rung"] == "udp/33434").items()
        retried = [line for line in said if "trying again" in line]
        assert retried and f"udp/33434 (port {port}): address already in use" in retried[0]
    finally:
        releasing.cancel()
        holder.close()
