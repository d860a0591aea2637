"""Calls that talk until the test hangs them up, and waiting for media between parties.

Defect pinned down: parties that called for a fixed few seconds could, on a busy
machine, leave before the other had joined: the meeting never had both, and the
verdict read nothing relayed. Here a ``pinhole call`` talks (``--seconds 600``) until
the test has seen what it waits for; then Ctrl-C hangs it up and it reports as at its
end (exit 0, its summary, its end-of-call report).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from typing import Any

import aiohttp

from lab.stack import Stack
from tests.waiting import until_async

UNTIL_HUNG_UP_S = 600.0  # a party's --seconds when the test hangs it up


def pinhole_argv(stack: Stack, *args: str) -> list[str]:
    """``pinhole --stack <the stack's stack.json> args…`` as a process's argv."""
    return [sys.executable, "-m", "client", "--stack", str(stack.state_dir / "stack.json"),
            *args]


class Party:
    """A ``pinhole`` process (a ``call --seconds 600``) that runs until :meth:`hang_up`."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._output = asyncio.ensure_future(proc.communicate())

    @classmethod
    async def start(cls, stack: Stack, *args: str) -> Party:
        return cls(await asyncio.create_subprocess_exec(
            *pinhole_argv(stack, *args),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE))

    async def hang_up(self) -> tuple[int, str, str]:
        """Ctrl-C (unless it already ended); its exit status, stdout and stderr."""
        if not self._output.done():
            self.proc.send_signal(signal.SIGINT)
        return await self.ended()

    async def ended(self) -> tuple[int, str, str]:
        """Its exit status, stdout and stderr once it ends by itself."""
        out, err = await asyncio.wait_for(self._output, UNTIL_HUNG_UP_S + 60)
        assert self.proc.returncode is not None
        return self.proc.returncode, out.decode(), err.decode()

    async def report(self, *, hang_up: bool = True) -> dict[str, Any]:
        """Hang up (or, ``hang_up=False``, let the call end) and read the ``--json``
        report of a call that exited 0."""
        rc, out, err = await (self.hang_up() if hang_up else self.ended())
        assert rc == 0, err
        result: dict[str, Any] = json.loads(out)
        return result


async def hang_up_all(parties: list[Party]) -> list[dict[str, Any]]:
    """Hang every party up at once and read their reports, in order."""
    return list(await asyncio.gather(*(p.report() for p in parties)))


async def relayed(stack: Stack, node: str) -> float:
    """SRTP packets ``node`` has relayed to participants (its metrics)."""
    url = next(n["metrics_url"] for n in stack.nodes if n["id"] == node)
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        text = await response.text()
    match = re.search(r'^pinhole_node_packets_total\{direction="out"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


async def media_between(stack: Stack, meeting: str, *, parties: int = 2,
                        node: str | None = None, since: float = 0.0,
                        timeout_s: float = 60) -> str:
    """``parties`` participants of ``meeting`` latched (on ``node`` if given; the node's
    "latched" event recorded each rung), and their node relayed media between them:
    50 packets more than ``since``, about half a second of both talking. Returns the
    node."""
    api = await stack.register("watcher")
    seen: list[object] = []  # the last view, named if it never comes
    try:
        async def latched() -> bool:
            try:
                view = await api.meeting(meeting)
            except Exception:  # not created yet
                return False
            seen[:] = [[(p.node_id, p.transport) for p in view.participants]]
            nodes = {p.node_id for p in view.participants}
            return len(view.participants) == parties and len(nodes) == 1 and \
                all(p.transport for p in view.participants) and node in (None, *nodes)

        try:
            await until_async(latched, f"{parties} parties latched on {node or 'one node'}",
                              timeout_s=timeout_s)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen (node, rung): {seen}") from None
        on = str((await api.meeting(meeting)).participants[0].node_id)

        async def moved_media() -> bool:
            return await relayed(stack, on) >= since + 50

        await until_async(moved_media, f"{on} relayed media between them", timeout_s=timeout_s)
        return on
    finally:
        await api.close()
