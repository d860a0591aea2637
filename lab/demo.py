"""make demo: two narrated acts on loopback, no root.

Act one: a cloud and three regional media nodes; alice and bob register, probe
every node over UDP, TCP and TLS, meet, and talk over udp/5004.
Act two: the same story where UDP is really unavailable - the media nodes run
without their UDP listeners - so the probe finds no UDP rung, the ladder falls
to tcp/5004 (or tls/443), and each rung tried or passed over is shown.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from client.device import Device
from client.media import MediaSession
from client.probe import ProbeOutcome
from lab.pki import ORG
from lab.stack import REGIONS, NodeSpec, Stack, running_stack
from wire.models import Joined
from wire.transports import DeviceProfile, RungName, Transport, allowed_rungs

#: Act two's nodes: the same regions, no UDP listener at all (as if UDP never got out).
NO_UDP: tuple[NodeSpec, ...] = tuple(
    NodeSpec(n.id, n.region, n.simulated_rtt_ms, (*n.extra_args, "--no-udp")) for n in REGIONS)


def probe_table(outcomes: list[ProbeOutcome]) -> str:
    rows = [f"  {'node':<12} {'transport':<10} {'port':>6} {'RTT ms':>8}  mapped address"]
    for o in sorted(outcomes, key=lambda o: (o.target.node_id, o.target.rung)):
        rtt = f"{o.rtt_ms:8.1f}" if o.rtt_ms is not None else f"{'—':>8}"
        seen = str(o.mapped) if o.mapped else (o.error or "")
        rows.append(f"  {o.target.node_id:<12} {o.target.rung:<10} {o.target.address.port:>6}"
                    f" {rtt}  {seen}")
    return "\n".join(rows)


def ladder_text(device: Device, outcomes: list[ProbeOutcome], chosen: RungName | None) -> str:
    """Each rung of the device's ladder, best first: what the probe and the connect saw."""
    lines = []
    for rung in allowed_rungs(device.profile, legacy_dc=False):
        probed = [o for o in outcomes if o.target.rung == rung.name]
        answered = [o for o in probed if o.rtt_ms is not None]
        tried = [a for a in device.attempts if a.rung == rung.name]
        if not probed and rung.transport is Transport.HTTP_PROXY:
            seen = "not tried: no HTTP proxy on this network"
        elif not probed:
            seen = f"not offered: no node listens on {rung.transport.value.upper()}"
        elif not answered:
            seen = f"probed {len(probed)} node(s): no answer, abandoned"
        else:
            seen = f"answered by {len(answered)}/{len(probed)} node(s)"
        for a in tried:
            seen += (f"; connect: authenticated in {a.ms:.0f} ms" if a.ok else
                     f"; connect: abandoned after {a.ms:.0f} ms ({a.error})")
        mark = "→" if rung.name == chosen else " "
        lines.append(f"  {mark} {rung.name:<10} {seen}")
    return "\n".join(lines)


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
    stack: Stack, seconds: float, say: Callable[[str], None], *, ladder: bool = False
) -> dict[str, Any]:
    """alice and bob register, probe, meet and talk; ``ladder``: narrate each rung."""
    names = ("alice", "bob")
    devices: list[Device] = []
    outcomes: dict[str, list[ProbeOutcome]] = {}
    summary: dict[str, Any] = {"participants": []}
    for name in names:
        device = Device(stack.api(), DeviceProfile.DESKTOP)
        await device.register(ORG, stack.enrollment_key, name)
        devices.append(device)
        nodes = device.registration.nodes if device.registration else []
        offered = sorted({e.transport.upper() for n in nodes for e in n.endpoints})
        say(f"\n{name}: registered; probing {len(nodes)} node(s) over "
            f"{', '.join(offered) or 'nothing'} …")
        outcomes[name] = await device.discover()
        say(probe_table(outcomes[name]))
        say(f"{name}: reported reachability to the cloud (kept 2 hours)")
    meeting = await devices[0].api.create_meeting("demo")
    say(f"\nmeeting {meeting.id} created")
    sessions = []
    for name, device in zip(names, devices, strict=True):
        joined = await device.join(meeting.id)
        say(f"\n{name} joined:")
        say(assignment_text(joined))
        session = await device.connect(joined)
        if ladder:
            say(f"  {name}'s ladder, best first:")
            say(ladder_text(device, outcomes[name], session.rung))
        say(f"  {name} latched on {session.rung}; the node saw {name} at {session.mapped}")
        sessions.append(session)
    say(f"\nalice and bob exchange SRTP audio for {seconds:.0f} s (50 packets/s each way) …")
    await talk(sessions, seconds)
    for name, device, s in zip(names, devices, sessions, strict=True):
        c = s.counters
        loss = max((st.loss for st in s.sources.values()), default=0.0)
        say(f"  {name} over {s.rung}: sent {c.packets_sent}, received {c.packets_received}, "
            f"auth failures {c.drops.get('auth', 0)}, loss {loss:.1%}, keepalive RTT "
            f"{c.keepalive_rtt_ms or 0:.1f} ms")
        summary["participants"].append({
            "name": name, "rung": s.rung, "sent": c.packets_sent,
            "received": c.packets_received, "auth_failures": c.drops.get("auth", 0),
            "loss": round(loss, 3),
            "attempts": [{"rung": a.rung, "ok": a.ok, "ms": round(a.ms, 1), "error": a.error}
                         for a in device.attempts],
        })
        s.close()
    for device in devices:
        await device.api.close()
    return summary


async def run(seconds: float = 3.0, *, as_json: bool = False,
              state_dir: Path | None = None) -> int:
    def say(text: str) -> None:
        if not as_json:
            print(text, flush=True)

    state = state_dir
    say("act one: an open network")
    async with running_stack(state_dir=Path(state) / "open" if state else None,
                             progress=say) as stack:
        open_call = await scripted_meeting(stack, seconds, say)
    say("\nstack stopped: every process ended, every port released")
    say("\nact two: UDP does not get out - the media nodes run without UDP listeners")
    async with running_stack(NO_UDP, state_dir=Path(state) / "no-udp" if state else None,
                             progress=say) as stack:
        no_udp = await scripted_meeting(stack, seconds, say, ladder=True)
    say("\nstack stopped: every process ended, every port released")
    acts = {"open": open_call, "no_udp": no_udp}
    ok = all(p["received"] > 0 and p["auth_failures"] == 0
             for act in acts.values() for p in act["participants"]) and all(
        p["rung"] in (RungName.TCP_5004, RungName.TLS_443) for p in no_udp["participants"])
    say("\nthe story: " + ("media found its way both times" if ok else "something FAILED"))
    if as_json:
        print(json.dumps({"ok": ok, "acts": acts}))
    return 0 if ok else 1
