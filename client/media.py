"""A client's media leg: latch with an authenticated Binding Request, then SRTP both ways.

DESIGN: "The client's first packet on a transport is a Binding Request with
USERNAME "<node_ufrag>:<client_ufrag>", MESSAGE-INTEGRITY keyed by pwd,
FINGERPRINT. The node authenticates it and latches the leg". Consent checks
repeat that request about every ``interval_s``, each interval drawn between 0.8
and 1.2 times it (RFC 7675 §5.1); they also keep the firewall's pinhole open
for a participant who only listens (seed: the pinhole "is usually closed after
30 seconds if no packets are sent from inside"), even where it closes sooner.
The basic period is 4 s, not RFC 7675's 5 s: randomized, 5 s would leave up
to 6 s between checks, and a firewall that forgets a UDP flow after 5 s
without an outbound packet would drop a listener's media for up to a second
each time (RFC 7675 lets an agent check more often).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from client.stats import ReceiveStats
from wire.address import Address
from wire.demux import PacketKind, classify, is_rtcp
from wire.errors import SrtpError, StunError
from wire.framing import FrameDecoder, encode_frame
from wire.models import Joined
from wire.rtp import build_rtp, parse_rtp_header
from wire.srtp import SrtpKeys, SrtpProfile, SrtpReceiver, SrtpSender
from wire.stun import build_leg_binding, parse_binding_response, transaction_id_of
from wire.tls import cert_fingerprint, pin_mismatch_message, unverified_client_context

AUDIO_PT = 0  # PCMU, 8 kHz: 160 samples per 20 ms packet (50 packets/s)
VIDEO_PT = 96  # dynamic payload type for the synthetic video stream
CONSENT_S = 4.0  # basic period of consent checks: 3.2-4.8 s once randomized (see above)
VIDEO_PACKET_BYTES = 1100  # a typical video RTP payload, under a 1200-byte path MTU budget


class MediaError(Exception):
    """A media leg could not be established."""


@dataclass(slots=True)
class MediaCounters:
    packets_sent: int = 0
    bytes_sent: int = 0
    packets_received: int = 0
    bytes_received: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    keepalive_rtt_ms: float | None = None

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, deliver: Callable[[bytes], None]) -> None:
        self.deliver = deliver

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.deliver(data)

    def error_received(self, exc: Exception) -> None:
        pass


class MediaSession:
    """One participant's leg to its node on one transport."""

    def __init__(self, joined: Joined, *, keep_payloads: int = 1000) -> None:
        self.joined = joined
        profile = SrtpProfile(joined.srtp.profile)
        self._sender = SrtpSender(
            SrtpKeys.from_b64(profile, joined.srtp.client_to_node.get_secret_value())
        )
        self._receiver = SrtpReceiver(
            SrtpKeys.from_b64(profile, joined.srtp.node_to_client.get_secret_value())
        )
        self._pwd = joined.ice.pwd.get_secret_value().encode()
        self.counters = MediaCounters()
        self.sources: dict[int, ReceiveStats] = {}
        self.payloads: deque[tuple[int, int, bytes]] = deque(maxlen=keep_payloads)
        self.rung: str | None = None
        self.mapped: Address | None = None
        # time.monotonic() of the answer that latched the leg, and of the first SRTP packet
        # from another participant that decrypted (None until then)
        self.latched_at: float | None = None
        self.first_media_at: float | None = None
        self.last_media_at: float | None = None
        # time.monotonic() of the last packet from the node that proved the leg alive: an
        # authenticated answer or a decrypted SRTP packet (the silence watch reads it)
        self.heard_at: float | None = None
        self._answered_at = 0.0
        self._send: Callable[[bytes], None] | None = None
        self._closers: list[Callable[[], None]] = []
        self._pending: dict[bytes, tuple[asyncio.Future[bytes], float]] = {}
        self._seq = 0
        self._ts = 0
        self._keepalive: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- connect

    async def connect_udp(self, address: Address, rung: str, *, timeout_s: float = 2.0) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self._on_packet), remote_addr=address
        )
        self._send = transport.sendto
        self._closers.append(transport.close)
        await self._latch(rung, timeout_s, retransmit_s=0.1)

    async def connect_stream(
        self, address: Address, rung: str, *, tls: bool, timeout_s: float = 3.0
    ) -> None:
        """TCP or TLS with RFC 4571 framing; TLS checks the node's published fingerprint."""
        context = unverified_client_context() if tls else None
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(address.host, address.port, ssl=context)
        if context is not None:
            self._check_pin(writer)
        await self._attach(reader, writer, rung, timeout_s)

    async def connect_tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                             rung: str, *, timeout_s: float = 3.0) -> None:
        """TLS inside an HTTP CONNECT tunnel (the http-proxy rung), then framing."""
        async with asyncio.timeout(timeout_s):
            await writer.start_tls(unverified_client_context())
        self._check_pin(writer)
        await self._attach(reader, writer, rung, timeout_s)

    def _check_pin(self, writer: asyncio.StreamWriter) -> None:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        got, expected = cert_fingerprint(der), self.joined.node.fingerprint
        if expected and got != expected:
            writer.close()
            raise MediaError(pin_mismatch_message(
                f"media node {self.joined.node.id}", expected, got,
                [self.joined.node.address]))

    async def _attach(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      rung: str, timeout_s: float) -> None:
        self._send = lambda data: writer.write(encode_frame(data))
        self._closers.append(writer.close)
        reader_task = asyncio.create_task(self._read_stream(reader))

        def stop_reading() -> None:
            reader_task.cancel()

        self._closers.append(stop_reading)
        await self._latch(rung, timeout_s, retransmit_s=1.0)

    async def _read_stream(self, reader: asyncio.StreamReader) -> None:
        decoder = FrameDecoder()
        with contextlib.suppress(OSError, ssl.SSLError):
            while chunk := await reader.read(65536):
                for frame in decoder.feed(chunk):
                    self._on_packet(frame)

    async def _latch(self, rung: str, timeout_s: float, retransmit_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                rtt = await self.binding(min(retransmit_s, deadline - time.monotonic()))
            except TimeoutError:
                retransmit_s = min(retransmit_s * 2, 1.0)
                continue
            self.rung = rung
            self.latched_at = self._answered_at
            self.counters.keepalive_rtt_ms = rtt
            return
        self.close()
        raise MediaError(f"no authenticated answer on {rung} within {timeout_s:.1f} s")

    async def binding(self, timeout_s: float) -> float:
        """One authenticated Binding transaction on the leg; its RTT in ms."""
        if self._send is None:
            raise MediaError("not connected")
        ice = self.joined.ice
        request = build_leg_binding(ice.node_ufrag, ice.client_ufrag, self._pwd)
        txid = transaction_id_of(request)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        sent = time.perf_counter()
        self._pending[txid] = (future, sent)
        self._send(request)
        try:
            data = await asyncio.wait_for(future, timeout_s)
        finally:
            self._pending.pop(txid, None)
        answer = parse_binding_response(data, pwd=self._pwd)
        if answer.error is not None:
            raise MediaError(f"node refused the leg: {answer.error[0]} {answer.error[1]}")
        self.mapped = answer.mapped
        return (time.perf_counter() - sent) * 1000

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
            try:
                txid = transaction_id_of(data)
            except (StunError, ValueError):
                self.counters.drop("stun")
                return
            pending = self._pending.get(txid)
            if pending is not None and not pending[0].done():
                self._answered_at = self.heard_at = time.monotonic()
                pending[0].set_result(data)
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
        stats = self.sources.get(header.ssrc)
        if stats is None:
            stats = self.sources[header.ssrc] = ReceiveStats()
        stats.update(header.sequence, header.timestamp, now)
        self.payloads.append((header.ssrc, header.sequence, rtp[12 + 4 * header.csrc_count:]))

    # ---------------------------------------------------------------- keepalive

    def start_keepalives(self, interval_s: float = CONSENT_S) -> None:
        """An authenticated Binding about every ``interval_s``: consent and the NAT pinhole.

        RFC 7675 §5.1: each interval drawn uniformly between 0.8 and 1.2 times
        the basic period, so that legs do not synchronise.
        """

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval_s * random.uniform(0.8, 1.2))
                with contextlib.suppress(TimeoutError, MediaError, StunError):
                    self.counters.keepalive_rtt_ms = await self.binding(2.0)

        self._keepalive = asyncio.create_task(loop())

    def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        for closer in self._closers:
            closer()
        self._closers.clear()
        self._send = None
