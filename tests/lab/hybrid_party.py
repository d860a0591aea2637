"""One participant of the hybrid-node lab, run in a lab namespace.

``python -m tests.lab.hybrid_party --stack S --meeting M --name N [--org O] [--proxy URL]
[--remote] [--seconds T]`` joins and prints a ``ready`` JSON line, then talks (audio every
20 ms; payload byte 0 is the participant's number) for ``T`` seconds or, by default, until
Ctrl-C hangs it up, printing what it has heard so far once a second (a test waits for
what it needs instead of guessing how long two parties overlap), and last one JSON line
with the result. On ``media.reassigned`` it moves its media to the new assignment, and
records (wall-clock, comparable across namespaces) when the event came and when the first
packet from another participant arrived on the new leg.
``--remote``: a device on the internet side (reports only what it reached; nothing special
otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from client.api import ApiError, CloudApi
from client.device import Device
from client.media import MediaError, MediaSession
from client.proxy import LocalTunnelProxy, discover_proxy
from edge import measure
from wire.address import Address
from wire.models import Event
from wire.tls import client_context
from wire.transports import DeviceProfile, RungName


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--stack", required=True)
    p.add_argument("--meeting", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--org", default="")
    p.add_argument("--proxy", default=None)
    p.add_argument("--number", type=int, default=0)
    p.add_argument("--seconds", type=float, default=600.0, help="at most (Ctrl-C ends it)")
    p.add_argument("--latch-on", default="",
                   help="ADDR: also send this device's leg request to ADDR:5004 (UDP)")
    a = p.parse_args()
    # Ctrl-C hangs up from the start: a test may send it the moment it reads the ready line
    # (defect: installed after that line, a SIGINT sent at once was lost and the party talked
    # on until the test gave up on it)
    hung_up = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, hung_up.set)
    stack = json.loads(Path(a.stack).read_text())
    org = a.org or next(iter(stack["orgs"]))
    proxy, _ = await discover_proxy(stack["cloud"], DeviceProfile.DESKTOP, explicit=a.proxy,
                                    pac_url=None, wpad_host=None, credentials=None)
    shim = await LocalTunnelProxy(proxy).start() if proxy else None
    api = CloudApi(stack["cloud"], client_context(stack["ca"]),
                   proxy=shim.url if shim else None)
    device = Device(api, DeviceProfile.DESKTOP, cache=None, proxy=proxy)
    await device.register(org, stack["orgs"][org]["enrollment_key"], a.name)
    nodes = [n.id for n in (await api.nodes()).nodes]
    await device.discover()
    joined = await device.join(a.meeting)
    sessions_owner = joined
    sessions: list[MediaSession] = [await device.connect(joined)]
    sessions[0].start_keepalives()
    out: dict[str, Any] = {"name": a.name, "org": org, "listed": nodes, "ssrc": joined.ssrc,
                           "node": joined.node.id, "rung": sessions[0].rung,
                           "rule": joined.reason.rule, "participant_id": joined.participant_id}
    if a.latch_on:
        stranger = MediaSession(joined)
        try:
            await stranger.connect_udp(Address(a.latch_on, 5004), RungName.UDP_5004, timeout_s=2.0)
            out["latch_on"] = "latched"
        except MediaError as exc:
            out["latch_on"] = str(exc)
        stranger.close()
    print(json.dumps({"ready": True, **out}), flush=True)

    async def on_event(event: Event) -> None:
        if (event.type == "media.reassigned" and event.assignment is not None
                and event.participant_id == joined.participant_id):
            out["reassigned_at"] = time.time()
            moved = await device.connect(event.assignment)
            moved.start_keepalives()
            sessions[-1].close()
            sessions.append(moved)
            out["moved_to"], out["moved_rung"] = event.assignment.node.id, moved.rung

    def heard_so_far() -> dict[str, int]:
        heard: Counter[int] = Counter()
        for session in sessions:
            heard.update(payload[0] for _, _, payload in session.payloads)
        return {str(k): v for k, v in heard.items()}

    follower = asyncio.create_task(device.follow_events(on_event))
    for i in range(int(a.seconds * 50)):
        if hung_up.is_set():
            break
        sessions[-1].send_audio(bytes([a.number]) + i.to_bytes(4, "big") + bytes(155))
        if i % 50 == 0:
            resumed = len(sessions) > 1 and sessions[-1].first_media_at is not None
            print(json.dumps({"heard": heard_so_far(), "resumed": resumed}), flush=True)
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower
    if len(sessions) > 1 and sessions[-1].first_media_at is not None:
        # first_media_at is time.monotonic(): convert to wall clock through "now"
        out["resumed_at"] = time.time() - (time.monotonic() - sessions[-1].first_media_at)
    seen: set[bytes] = set()
    for session in sessions:
        seen.update(payload[:5] for _, _, payload in session.payloads)
    out["heard"] = heard_so_far()
    out["duplicates"] = sum(out["heard"].values()) - len(seen)  # a packet heard twice
    with contextlib.suppress(ApiError):
        await api.leave(a.meeting, sessions_owner.participant_id)
    out["bytes_sent"] = sum(s.counters.bytes_sent for s in sessions)
    for session in sessions:
        session.close()
    await api.close()
    if shim is not None:
        await shim.close()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    measure.start_if_asked(os.environ)  # under make test, as a Pinhole command does
    sys.exit(asyncio.run(main()))
