"""How long does this network's firewall keep a UDP pinhole open for a listener?

The seeds: a pinhole "is usually closed after 30 seconds if no packets are sent
from inside"; some firewalls close it much sooner, and some count only packets
from inside. What matters is what a muted participant lives through, so that
is what is measured: this device joins a scratch meeting twice, a *listener*
leg that sends its latching Binding Request and then nothing at all (no
consent checks), and a *talker* leg that sends audio every 20 ms. The time
from the listener's last outbound packet to the last media it received is how
long the pinhole lasted; media that keeps arriving to the end of the window
means it outlives the window.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from client.device import Device
from client.media import CONSENT_S
from wire.transports import RUNGS_BY_NAME, RungName, Transport

#: RFC 7675 §5.1 randomization: the longest a leg goes between consent checks.
LONGEST_CONSENT_GAP_S = CONSENT_S * 1.2


@dataclass(frozen=True, slots=True)
class UdpIdleFinding:
    rung: RungName | None  # the listener's rung; only a UDP rung says anything about UDP
    window_s: float
    closed_after_s: float | None  # None: media arrived until the end of the window

    @property
    def looks_short(self) -> bool:
        """Shorter than the longest gap between a leg's consent checks: a muted
        participant would lose media between them."""
        return (self.closed_after_s is not None
                and self.closed_after_s < LONGEST_CONSENT_GAP_S)

    def advice(self) -> str | None:
        if self.rung is None or RUNGS_BY_NAME[self.rung].transport is not Transport.UDP:
            return None
        if self.closed_after_s is None:
            return None
        text = (f"the firewall closes a UDP flow about {self.closed_after_s:.1f} s after the "
                "last packet from inside")
        if self.looks_short:
            return (text + f", sooner than calls send consent checks (up to "
                    f"{LONGEST_CONSENT_GAP_S:.1f} s apart): muted participants will lose "
                    "media; set the firewall's UDP idle timeout to 30 s or more")
        return text + "; consent checks keep calls' pinholes open"

    def as_dict(self) -> dict[str, object]:
        return {"rung": self.rung, "window_s": self.window_s,
                "closed_after_s": self.closed_after_s, "looks_short": self.looks_short,
                "advice": self.advice()}


def finding(rung: RungName | None, last_outbound: float, last_media: float | None,
            window_end: float, window_s: float, margin_s: float = 0.5) -> UdpIdleFinding:
    """The finding from the listener's times (time.monotonic())."""
    if last_media is None:
        return UdpIdleFinding(rung, window_s, 0.0)
    if last_media >= window_end - margin_s:
        return UdpIdleFinding(rung, window_s, None)
    return UdpIdleFinding(rung, window_s, round(last_media - last_outbound, 2))


async def measure_udp_idle(device: Device, window_s: float = 20.0) -> UdpIdleFinding:
    """Join a scratch meeting as listener and talker; see how long the listener hears."""
    meeting = await device.api.create_meeting(title="netcheck: UDP idle timeout")
    listener_joined = await device.join(meeting.id)
    listener = await device.connect(listener_joined)
    talker_joined = await device.join(meeting.id)
    talker = await device.connect(talker_joined)
    try:
        last_outbound = listener.latched_at or time.monotonic()
        end = time.monotonic() + window_s
        i = 0
        while time.monotonic() < end:
            talker.send_audio(i.to_bytes(4, "big") + bytes(156))
            i += 1
            await asyncio.sleep(0.02)
        return finding(listener.rung, last_outbound, listener.last_media_at, end, window_s)
    finally:
        listener.close()
        talker.close()
        for joined in (listener_joined, talker_joined):
            await device.api.leave(joined.meeting_id, joined.participant_id)
