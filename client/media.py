"""A client's media leg: latch with an authenticated Binding Request, then SRTP both ways.

docs/design.md "Media leg": "The client's first packet on a transport is a Binding Request with
USERNAME "<node_ufrag>:<client_ufrag>", MESSAGE-INTEGRITY keyed by pwd,
FINGERPRINT. The node authenticates it and latches the leg". That exchange,
its retransmission, the consent checks that also serve as keepalives (seed:
the pinhole "is usually closed after 30 seconds if no packets are sent from
inside"; about every 4 s, randomized, so that even a firewall that closes a
pinhole after 5 s idle holds for a participant who only listens) and the
certificate pin are the sans-I/O ``wire.leg_client``; opening the transport
(UDP, framed TCP/TLS, TLS in a proxy tunnel), the pin check and driving the
leg client are :mod:`edge.leg_transport`, shared with a node's cascades.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Final

from client.errors import MediaError as MediaError
from client.inspection import inspection_message, node_certificate_mismatch
from client.stats import ReceiveStats
from edge.leg_transport import (
    LegLink,
    LegPath,
    check_pin,
    open_over_tunnel,
    open_stream,
    open_udp,
)
from wire.address import Address
from wire.errors import SrtpError
from wire.leg_client import (
    CONSENT_INTERVAL_S,
    ConsentExpired,
    ConsentRefreshed,
    Latched,
    LatchFailed,
    LegClient,
    LegConfig,
    LegDriver,
    LegEvent,
    PinMismatch,
)
from wire.models import Joined
from wire.multiplex import PacketKind, classify, is_rtcp
from wire.payload_types import PCMU, SYNTHETIC_VIDEO
from wire.rtp import build_rtp, parse_rtp_header
from wire.srtp import SrtpKeys, SrtpProfile, SrtpReceiver, SrtpSender
from wire.transports import RungName

AUDIO_PT: Final = PCMU.payload_type  # 8 kHz: 160 samples per 20 ms packet (50 packets/s)
VIDEO_PT: Final = SYNTHETIC_VIDEO.payload_type  # the synthetic video load (wire.payload_types)
CONSENT_S = CONSENT_INTERVAL_S  # basic period of consent checks: 3.2-4.8 s once randomized
VIDEO_PACKET_BYTES = 1100  # a typical video RTP payload, under a 1200-byte path MTU budget


@dataclass(slots=True)
class MediaCounters:
    packets_sent: int = 0
    bytes_sent: int = 0
    packets_received: int = 0
    bytes_received: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    keepalive_rtt_ms: float | None = None
    #: RTP packets received with the marker bit: for video (and content), the last
    #: packet of a frame (RFC 3550 §5.1; RFC 3551 §4.1)
    frames_received: int = 0
    frames_sent: int = 0

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1


class MediaSession:
    """One participant's leg to its node on one transport.

    The leg's STUN (latch, consent checks, the certificate pin) is the
    sans-I/O :class:`~wire.leg_client.LegClient`; this class carries the
    sockets, the SRTP and the statistics. ``on_consent_lost`` is called when
    the node has not answered for the consent timeout (RFC 7675 §5.1): the
    caller moves the leg.
    """

    def __init__(self, joined: Joined, *, keep_payloads: int = 1000,
                 leg_config: LegConfig | None = None,
                 on_consent_lost: Callable[[ConsentExpired], None] | None = None) -> None:
        self.joined = joined
        profile = SrtpProfile(joined.srtp.profile)
        self._sender = SrtpSender(
            SrtpKeys.from_b64(profile, joined.srtp.client_to_node.get_secret_value())
        )
        self._receiver = SrtpReceiver(
            SrtpKeys.from_b64(profile, joined.srtp.node_to_client.get_secret_value())
        )
        self._pwd = joined.ice.pwd.get_secret_value().encode()
        # keepalives start with start_keepalives(); consent loss is detected from the latch on
        self._leg_config = leg_config or LegConfig(consent_interval_s=None)
        self._on_consent_lost = on_consent_lost
        self.counters = MediaCounters()
        self.sources: dict[int, ReceiveStats] = {}
        self.payloads: deque[tuple[int, int, bytes]] = deque(maxlen=keep_payloads)
        self.rung: RungName | None = None
        self.mapped: Address | None = None
        # time.monotonic() of the answer that latched the leg, and of the first SRTP packet
        # from another participant that decrypted (None until then)
        self.latched_at: float | None = None
        self.first_media_at: float | None = None
        self.first_frame_at: float | None = None  # the first packet with the marker bit
        self.first_sent_at: float | None = None  # the first frame sent (send_frame)
        self.consent_lost: ConsentExpired | None = None
        self.last_media_at: float | None = None
        # time.monotonic() of the last packet from the node that proved the leg alive: an
        # authenticated answer or a decrypted SRTP packet (a silence watch reads it)
        self.heard_at: float | None = None
        self._send: Callable[[bytes], None] | None = None
        self._closers: list[Callable[[], None]] = []
        self._driver: LegDriver | None = None
        self._link: LegLink | None = None
        self._path: LegPath | None = None
        self._answers: list[asyncio.Future[float]] = []
        self._seq = 0
        self._ts = 0

    # ---------------------------------------------------------------- connect

    def _new_leg(self, *, reliable: bool, rto_s: float, timeout_s: float) -> LegClient:
        node = self.joined.node
        return LegClient(
            self.joined.ice.node_ufrag, self.joined.ice.client_ufrag, self._pwd,
            config=replace(self._leg_config, reliable=reliable, rto_s=rto_s, rto_max_s=1.0,
                           latch_timeout_s=timeout_s),
            expected_fingerprint=node.fingerprint, peer_name=f"media node {node.id}",
            peer_domains=[node.address])

    async def connect_udp(self, address: Address, rung: RungName, *,
                          timeout_s: float = 2.0) -> None:
        leg = self._new_leg(reliable=False, rto_s=0.1, timeout_s=timeout_s)
        await self._latch(leg, await open_udp(address, rung, self._deliver))

    async def connect_stream(
        self, address: Address, rung: RungName, *, tls: bool, timeout_s: float = 3.0
    ) -> None:
        """TCP or TLS with RFC 4571 framing; TLS checks the node's published fingerprint."""
        leg = self._new_leg(reliable=True, rto_s=1.0, timeout_s=timeout_s)
        try:
            path = await open_stream(address, rung, self._deliver, tls=tls,
                                     timeout_s=timeout_s)
        except (ConnectionResetError, ssl.SSLError) as exc:
            if not tls:
                raise
            raise MediaError(inspection_message(
                [f"media node {self.joined.node.id} ({address.host}:{address.port})"],
                f"the connection was cut during the TLS handshake ({type(exc).__name__})"
            )) from None
        if tls:
            self._check_pin(leg, path)
        await self._latch(leg, path)

    async def connect_tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                             rung: RungName, *, timeout_s: float = 3.0) -> None:
        """TLS inside an HTTP CONNECT tunnel (the http-proxy rung), then framing."""
        leg = self._new_leg(reliable=True, rto_s=1.0, timeout_s=timeout_s)
        path = await open_over_tunnel(writer, rung, self._deliver, timeout_s=timeout_s)
        self._check_pin(leg, path)
        await self._latch(leg, path)

    def _check_pin(self, leg: LegClient, path: LegPath) -> None:
        try:
            check_pin(path, leg)
        except PinMismatch as exc:
            peer = path.peer if path.peer[0] else (self.joined.node.address, 0)
            raise MediaError(node_certificate_mismatch(
                self.joined.node.id, f"{peer[0]}:{peer[1]}", exc.seen, exc.expected)) from None

    def _deliver(self, data: bytes, path: LegPath) -> None:
        self._on_packet(data)

    async def _latch(self, leg: LegClient, path: LegPath) -> None:
        """RFC 8489 §6.2.1 through the leg client; raises :class:`MediaError` on failure."""
        self._path = path
        self._send = path.send
        self._closers.append(path.close)
        self.rung = path.rung
        self._link = LegLink(leg, path, self._on_leg_event)
        self._driver = self._link.driver
        outcome = await self._link.latch()
        if isinstance(outcome, LatchFailed):
            timeout = leg.config.latch_timeout_s
            message = (f"node {self.joined.node.id} refused the leg on {self.rung}: "
                       f"{outcome.code} {outcome.text}" if outcome.code is not None else
                       f"no authenticated answer on {self.rung} within {timeout or 0:.1f} s")
            self.rung = None
            self.close()
            raise MediaError(message)

    def _on_leg_event(self, event: LegEvent) -> None:
        if isinstance(event, Latched | ConsentRefreshed):
            self.heard_at = event.at
        if isinstance(event, Latched):
            self.latched_at, self.mapped = event.at, event.mapped
            self.counters.keepalive_rtt_ms = event.rtt_ms
        elif isinstance(event, LatchFailed):
            return  # the latch's outcome: _latch raises
        elif isinstance(event, ConsentRefreshed):
            self.mapped = event.mapped
            self.counters.keepalive_rtt_ms = event.rtt_ms
            for waiter in self._answers:
                if not waiter.done():
                    waiter.set_result(event.rtt_ms)
            self._answers.clear()
        else:
            self.consent_lost = event
            self.counters.drop("consent_lost")
            if self._on_consent_lost is not None:
                self._on_consent_lost(event)

    async def binding(self, timeout_s: float) -> float:
        """One consent check on the leg now; its RTT in ms (TimeoutError when unanswered)."""
        if self._driver is None or self._send is None:
            raise MediaError("not connected")
        answered: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._answers.append(answered)
        self._driver.call(self._driver.leg.check_now)
        try:
            return await asyncio.wait_for(answered, timeout_s)
        finally:
            if answered in self._answers:
                self._answers.remove(answered)

    def continue_from(self, previous: MediaSession) -> None:
        """This leg carries on the streams of ``previous``, the participant's leg before a
        move: one SSRC is one sequence space whichever node relays it (RFC 3550 §5.1), so
        what this leg sends continues the sequence numbers and timestamps, and what it
        receives is counted in the same per-source statistics. Loss over the call then
        counts the packets lost during the move (each leg alone had none)."""
        self._seq, self._ts = previous._seq, previous._ts
        for ssrc, earlier in previous.sources.items():
            later = self.sources.get(ssrc)
            if later is not None:  # heard on this leg before it took over
                earlier.absorb(later)
            self.sources[ssrc] = earlier

    @property
    def next_sequence(self) -> int:
        """The RTP sequence number of the next packet this leg sends."""
        return self._seq & 0xFFFF

    # ---------------------------------------------------------------- media

    def send_audio(self, payload: bytes) -> None:
        """One RTP packet (20 ms of PCMU-sized audio), SRTP-protected."""
        self._send_rtp(AUDIO_PT, payload, ts_step=160)

    def send_video(self, size: int = VIDEO_PACKET_BYTES, *, marker: bool = True) -> None:
        """One video-sized RTP packet (a synthetic frame slice, ``size`` bytes of payload).

        It shares the participant's SSRC and sequence space (the cloud assigns
        one SSRC per leg); the payload type tells receivers it is video.
        """
        self._send_rtp(VIDEO_PT, bytes(size), ts_step=0, marker=marker)

    def send_frame(self, number: int, packets: int, size: int = VIDEO_PACKET_BYTES, *,
                   ts_step: int = 45000) -> None:
        """One synthetic content frame: a burst of ``packets`` video-sized RTP packets of one
        timestamp, the last one marked (RFC 3550 §5.1: the marker bit ends a frame); the
        timestamp then moves ``ts_step`` on the 90 kHz clock (45000: 2 frames a second)."""
        for i in range(packets):
            payload = number.to_bytes(4, "big") + i.to_bytes(2, "big") + bytes(max(0, size - 6))
            self._send_rtp(VIDEO_PT, payload, ts_step=0, marker=i == packets - 1)
        self._ts += ts_step
        self.counters.frames_sent += 1
        if self.first_sent_at is None:
            self.first_sent_at = time.monotonic()

    def _send_rtp(self, payload_type: int, payload: bytes, *, ts_step: int,
                  marker: bool = False) -> None:
        if self._send is None:
            raise MediaError("not connected")
        rtp = build_rtp(
            payload_type=payload_type, sequence=self._seq & 0xFFFF,
            timestamp=self._ts & 0xFFFFFFFF, ssrc=self.joined.ssrc, payload=payload,
            marker=marker,
        )
        self._seq += 1
        self._ts += ts_step
        packet = self._sender.protect(rtp)
        self._send(packet)
        self.counters.packets_sent += 1
        self.counters.bytes_sent += len(packet)

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (tests use it to send tampered packets)."""
        if self._send is None:
            raise MediaError("not connected")
        self._send(data)

    def protect(self, rtp: bytes) -> bytes:
        return self._sender.protect(rtp)

    def _on_packet(self, data: bytes) -> None:
        kind = classify(data)
        if kind is PacketKind.STUN:
            if self._driver is None:
                self.counters.drop("stun")
            else:
                self._driver.receive(data)
            return
        if kind is not PacketKind.RTP or is_rtcp(data):
            self.counters.drop("not_rtp")
            return
        try:
            rtp = self._receiver.unprotect(data)
        except SrtpError as exc:
            self.counters.drop(exc.reason)
            return
        header = parse_rtp_header(rtp)
        now = time.monotonic()
        if self.first_media_at is None:
            self.first_media_at = now
        self.last_media_at = self.heard_at = now
        self.counters.packets_received += 1
        self.counters.bytes_received += len(data)
        if header.marker:
            self.counters.frames_received += 1
            if self.first_frame_at is None:
                self.first_frame_at = now
        stats = self.sources.get(header.ssrc)
        if stats is None:
            stats = self.sources[header.ssrc] = ReceiveStats()
        stats.update(header.sequence, header.timestamp, now)
        self.payloads.append((header.ssrc, header.sequence, rtp[12 + 4 * header.csrc_count:]))

    # ---------------------------------------------------------------- keepalive

    def start_keepalives(self, interval_s: float = CONSENT_INTERVAL_S) -> None:
        """Consent checks about every ``interval_s`` (RFC 7675 §5.1, randomized 0.8-1.2×):
        consent, and the NAT pinhole of a participant who only listens kept open."""
        if self._driver is not None:
            driver = self._driver
            driver.call(lambda now: driver.leg.keep_consent(now, interval_s))

    def close(self) -> None:
        if self._link is not None:
            self._link.close()
        for closer in self._closers:
            closer()
        self._closers.clear()
        self._send = None
