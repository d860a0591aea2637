"""``make demo``: a stack on loopback and one scripted two-party meeting, narrated."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from client.device import Device
from client.media import MediaSession
from client.probe import ProbeOutcome
from lab.pki import ORG
from lab.stack import Stack, running_stack
from wire.models import Joined


def probe_table(outcomes: list[ProbeOutcome]) -> str:
    rows = [f"  {'node':<12} {'transport':<10} {'port':>6} {'RTT ms':>8}  mapped address"]
    for o in sorted(outcomes, key=lambda o: (o.target.node_id, o.target.rung)):
        rtt = f"{o.rtt_ms:8.1f}" if o.rtt_ms is not None else f"{'—':>8}"
        seen = str(o.mapped) if o.mapped else (o.error or "")
        rows.append(f"  {o.target.node_id:<12} {o.target.rung:<10} {o.target.address.port:>6}"
                    f" {rtt}  {seen}")
    return "\n".join(rows)


def assignment_text(joined: Joined) -> str:
    r = joined.reason
    lines = [f"  assigned {joined.node.id} ({joined.node.region}) by rule {r.rule}; plan: "
             + " → ".join(e.rung for e in joined.plan)]
    for c in sorted(r.candidates, key=lambda c: (c.score is None, c.score or 0.0)):
        score = f"{c.score:7.1f}" if c.score is not None else f"{'—':>7}"
        lines.append(f"    {c.node_id:<12} score {score}  (rtt {c.rtt_ms or 0:.1f} + transport "
                     f"{c.transport_penalty_ms:.0f} + cascade {c.cascade_ms:.0f} + load "
                     f"{c.load_ms:.0f}){'  excluded: ' + c.excluded if c.excluded else ''}")
    return "\n".join(lines)


async def talk(sessions: list[MediaSession], seconds: float) -> None:
    """Every session sends 50 packets/s of 160-byte audio for ``seconds``."""
    for i in range(int(seconds * 50)):
        for n, s in enumerate(sessions):
            s.send_audio(bytes([n]) * 4 + i.to_bytes(4, "big") + bytes(152))
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # the last packets in flight


async def scripted_meeting(
    stack: Stack, seconds: float, say: Callable[[str], None]
) -> dict[str, Any]:
    devices: list[Device] = []
    summary: dict[str, Any] = {"participants": []}
    for name in ("alice", "bob"):
        device = Device(stack.api())
        await device.register(ORG, stack.enrollment_key, name)
        devices.append(device)
        count = len(device.registration.nodes) if device.registration else 0
        say(f"\n{name}: registered; probing {count} node(s) over UDP, TCP and TLS …")
        outcomes = await device.discover()
        say(probe_table(outcomes))
        say(f"{name}: reported reachability to the cloud (kept 2 hours)")
    meeting = await devices[0].api.create_meeting("demo")
    say(f"\nmeeting {meeting.id} created")
    sessions = []
    for device in devices:
        joined = await device.join(meeting.id)
        say(f"\n{device.registration.device_id if device.registration else '?'} joined:")
        say(assignment_text(joined))
        session = await device.connect(joined)
        say(f"  latched on {session.rung}; the node saw us at {session.mapped}")
        sessions.append(session)
    say(f"\nexchanging SRTP audio for {seconds:.0f} s (50 packets/s each way) …")
    await talk(sessions, seconds)
    for device, s in zip(devices, sessions, strict=True):
        c = s.counters
        loss = max((st.loss for st in s.sources.values()), default=0.0)
        say(f"  {device.registration.device_id if device.registration else '?'} over {s.rung}: "
            f"sent {c.packets_sent}, received {c.packets_received}, auth failures "
            f"{c.drops.get('auth', 0)}, loss {loss:.1%}, keepalive RTT "
            f"{c.keepalive_rtt_ms or 0:.1f} ms")
        summary["participants"].append({
            "rung": s.rung, "sent": c.packets_sent, "received": c.packets_received,
            "auth_failures": c.drops.get("auth", 0), "loss": loss,
        })
        s.close()
    for device in devices:
        await device.api.close()
    return summary


async def run(seconds: float = 3.0, *, as_json: bool = False) -> int:
    def say(text: str) -> None:
        if not as_json:
            print(text, flush=True)

    state = os.environ.get("PINHOLE_STATE_DIR")
    async with running_stack(state_dir=Path(state) if state else None, progress=say) as stack:
        summary = await scripted_meeting(stack, seconds, say)
    say("\nstack stopped: every process ended, every port released")
    ok = all(p["received"] > 0 and p["auth_failures"] == 0 for p in summary["participants"])
    if as_json:
        print(json.dumps({"ok": ok, **summary}))
    return 0 if ok else 1
