"""An aiortc endpoint as a Pinhole device, for the WebRTC tests: a WebRTC stack nobody here
wrote, joining through ``POST /v1/meetings/{id}/webrtc``.

aioice (aiortc's ICE) leaves loopback addresses out of what it gathers; the stacks of the
tests live on 127.0.0.0/8, so a test using it asks for the ``loopback_host`` fixture
(tests/conftest.py), which gives it its host address.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)

from client import Device
from lab.pki import ORG
from lab.stack import Stack
from wire.models import WebRtcJoined


class Peer:
    """One aiortc endpoint registered as a device, with what it receives."""

    def __init__(self, device: Device, configuration: RTCConfiguration | None = None) -> None:
        self.device = device
        # by default no ICE servers: no outside STUN
        self.configuration = configuration or RTCConfiguration(iceServers=[])
        self.pc = RTCPeerConnection(self.configuration)
        self.frames: dict[str, int] = {"audio": 0, "video": 0}
        self.readers: list[asyncio.Task[None]] = []
        self.joined: WebRtcJoined | None = None

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.readers.append(asyncio.create_task(self._read(track)))

    def renew(self) -> None:
        """A new peer connection with the same configuration (a new offer after its node
        died); the frames it decodes are counted anew."""
        self.pc = RTCPeerConnection(self.configuration)
        self.frames = {"audio": 0, "video": 0}

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.readers.append(asyncio.create_task(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                await track.recv()
            except Exception:  # the track ended (aiortc's MediaStreamError)
                return
            self.frames[track.kind] += 1

    async def join(self, meeting_id: str) -> WebRtcJoined:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.joined = await self.device.api.join_webrtc(meeting_id,
                                                        self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(self.joined.sdp, "answer"))
        return self.joined

    async def inbound(self, kind: str) -> dict[str, Any]:
        """aiortc's own ``inbound-rtp`` statistics for ``kind`` (packets it decrypted)."""
        report = await self.pc.getStats()
        for stat in report.values():
            if stat.type == "inbound-rtp" and stat.kind == kind:
                return {"packetsReceived": stat.packetsReceived}
        return {"packetsReceived": 0}

    async def close(self) -> None:
        await self.pc.close()
        for reader in self.readers:
            reader.cancel()
        await self.device.close()
        await self.device.api.close()


async def aiortc_peer(stack: Stack, name: str,
                      configuration: RTCConfiguration | None = None) -> Peer:
    device = Device(stack.api())
    await device.register(ORG, stack.enrollment_key, name)
    return Peer(device, configuration)


def selected_remote_port(peer: Peer) -> int:
    """The node port of the pair aiortc's ICE selected (its nominated pair)."""
    [transceiver] = peer.pc.getTransceivers()[:1]
    connection = transceiver.sender.transport.transport._connection
    [pair] = connection._nominated.values()
    return int(pair.remote_addr[1])
