"""Both directions of a two-party call, checked: the shared step of many media tests."""

from __future__ import annotations

import asyncio

from client.media import MediaSession
from tests.waiting import until


async def exchange(a: MediaSession, b: MediaSession, count: int = 10) -> None:
    """``count`` audio packets each way; each side must receive exactly the other's."""
    for i in range(count):
        a.send_audio(i.to_bytes(2, "big") + bytes(158))
        b.send_audio(i.to_bytes(2, "big") + bytes(158))
        await asyncio.sleep(0.005)
    # waits for the packets, not for a time (a fixed 0.5 s once came up short on a busy
    # machine); more than ``count`` would be a duplicate
    await until(lambda: min(a.counters.packets_received, b.counters.packets_received) >= count,
                f"{count} packets each way")
    assert a.counters.packets_received == count and b.counters.packets_received == count
