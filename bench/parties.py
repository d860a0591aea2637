"""Two-party calls driven in this process against a running stack (for the fault benchmarks).

Each party is a :class:`client.call.Call`, exactly what ``pinhole call`` runs:
media every 20 ms, ``media.reassigned`` followed, the silence watch on.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field

from client.call import Call
from client.device import Device
from lab.pki import ORG
from lab.stack import Stack


@dataclass
class Party:
    call: Call
    task: asyncio.Task[float] | None = None

    @property
    def node(self) -> str:
        return self.call.session.joined.node.id

    def back_after(self, at: float) -> float | None:
        """Seconds from ``at`` to the first media packet on a leg that began after it."""
        for leg in self.call.legs:
            first = leg.session.first_media_at
            if leg.started >= at and first is not None:
                return first - at
        return None

    def received(self) -> int:
        return sum(leg.session.counters.packets_received for leg in self.call.legs)

    def sent(self) -> int:
        return sum(leg.session.counters.packets_sent for leg in self.call.legs)


@dataclass
class Meeting:
    id: str
    parties: list[Party] = field(default_factory=list)

    def flowing(self, since_s: float = 0.5) -> bool:
        """Every party received media within the last ``since_s``."""
        now = time.monotonic()
        return all((p.call.session.last_media_at or 0.0) > now - since_s for p in self.parties)

    async def close(self) -> None:
        for party in self.parties:
            if party.task is not None:
                party.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await party.task
            party.call.close()
            with contextlib.suppress(Exception):
                await party.call.device.close()
                await party.call.device.api.close()


async def start_meeting(stack: Stack, seconds: float, names: tuple[str, ...] = ("a", "b"),
                        ) -> Meeting:
    """Register, probe and join every party; return once media flows both ways."""
    meeting = Meeting("bench-" + secrets.token_hex(4))
    for name in names:
        device = Device(stack.api())
        await device.register(ORG, stack.enrollment_key, f"{meeting.id}-{name}")
        await device.discover()
        await device.api.create_meeting(meeting_id=meeting.id)
        start = time.monotonic()
        joined = await device.join(meeting.id)
        call = Call(device, joined, start=start)
        await call.connect()
        meeting.parties.append(Party(call))
    for party in meeting.parties:
        party.task = asyncio.create_task(party.call.talk(seconds))
    async with asyncio.timeout(10):
        while not meeting.flowing():  # noqa: ASYNC110 - media arrives on sockets, not events
            await asyncio.sleep(0.05)
    return meeting
