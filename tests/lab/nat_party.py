"""One participant for the NAT-pinhole test, run inside the lab's enterprise namespace.

``python -m tests.lab.nat_party --stack S --meeting M --role sender|listener …``
prints a JSON line once it is latched, then one with its result. The sender talks
in phases (payload byte 0 = phase) once a line on its stdin says go;
a listener only listens, with or without keepalives, and counts what arrives
per phase, until a line on its stdin says the speaker is done (or ``--seconds``
pass); then it counts on until nothing has arrived for a moment, so a busy
machine does not cut off the speaker's last phase.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections import Counter
from pathlib import Path

from client.api import CloudApi
from client.device import Device
from edge import measure
from wire.tls import client_context

#: a listener told the speaker is done counts on until this long passes with nothing new
QUIET_S = 0.5


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--stack", required=True)
    p.add_argument("--meeting", required=True)
    p.add_argument("--role", choices=["sender", "listener"], required=True)
    p.add_argument("--keepalive-s", type=float, default=0.0, help="0: no keepalives")
    p.add_argument("--phases", default="1:1,0:5,2:2", help="sender: phase:seconds,…")
    p.add_argument("--seconds", type=float, default=60.0,
                   help="listener: at most this long, if no line comes on stdin")
    a = p.parse_args()
    stack = json.loads(Path(a.stack).read_text())
    org, creds = next(iter(stack["orgs"].items()))
    device = Device(CloudApi(stack["cloud"], client_context(stack["ca"])))
    await device.register(org, creds["enrollment_key"], a.role)
    await device.discover()
    session = await device.connect(await device.join(a.meeting))
    print(json.dumps({"ready": True, "rung": session.rung}), flush=True)
    if a.role == "listener":
        if a.keepalive_s > 0:
            session.start_keepalives(a.keepalive_s)
        stop = asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop, a.seconds)
        counted = -1
        while counted != len(session.payloads):  # until nothing more arrives for QUIET_S
            counted = len(session.payloads)
            await asyncio.sleep(QUIET_S)
        phases = Counter(payload[0] for _, _, payload in session.payloads)
        print(json.dumps({"phases": {str(k): v for k, v in phases.items()}}), flush=True)
    else:
        # talk once told to (a line on stdin): the test starts the listeners in between;
        # keepalives hold the speaker's own pinhole and latch while it waits
        session.start_keepalives(1.0)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for item in a.phases.split(","):
            phase, seconds = (float(x) for x in item.split(":"))
            for _ in range(int(seconds * 50)):
                if phase:
                    session.send_audio(bytes([int(phase)]) + bytes(159))
                await asyncio.sleep(0.02)
        print(json.dumps({"sent": session.counters.packets_sent}), flush=True)
    session.close()
    await device.api.close()
    return 0


if __name__ == "__main__":
    measure.start_if_asked(os.environ)  # under make test, as a Pinhole command does
    sys.exit(asyncio.run(main()))
