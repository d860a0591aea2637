"""Latch attacks against a node on real sockets, as root with raw sockets on loopback.

docs/design.md "Consent and keepalive": "A path latched to a leg with fresh consent is
never taken over by another leg, and a replayed request from another path
moves nothing." Two attackers, each as a real one would do it:

- a spoofed-source sender (raw socket, forged IPv4 source = the victim's
  IP:port) that authenticates the attacker's *own* leg: before the fix the
  victim's path was handed to the attacker's leg and the victim's SRTP was
  dropped as ``auth`` until its next keepalive;
- a sniffer on ``lo`` (AF_PACKET) that captures the victim's authenticated
  Binding Request and replays it from its own address: before the fix the
  latch moved and the replayer got the media (RFC 5389 §10.1.1 gives
  MESSAGE-INTEGRITY no replay protection on its own).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import time

import pytest

from client.media import MediaSession
from tests.integration.node_harness import connect, join, running_node
from tests.prereqs import require_root
from tests.waiting import HANG_S, until
from wire.address import Address
from wire.stun import build_leg_binding
from wire.transports import RungName

pytestmark = pytest.mark.slow

ETH_P_ALL = 0x0003


def spoofed_udp(source: Address, target: Address, payload: bytes) -> None:
    """Send ``payload`` over UDP with a forged IPv4 source (IP_HDRINCL raw socket)."""
    udp = struct.pack("!HHHH", source.port, target.port, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64,
                         socket.IPPROTO_UDP, 0, ipaddress.IPv4Address(source.host).packed,
                         ipaddress.IPv4Address(target.host).packed)
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        raw.sendto(header + udp, (target.host, 0))  # UDP checksum 0: none (RFC 768)


async def media_flows(sender: MediaSession, receiver: MediaSession, count: int = 10) -> int:
    """Packets ``receiver`` gets of ``count`` sent by ``sender`` (no keepalive in between),
    once it has them all (a packet not relayed is a hang, named)."""
    before = receiver.counters.packets_received
    for i in range(count):
        sender.send_audio(i.to_bytes(4, "big") + bytes(156))
        await asyncio.sleep(0.01)
    await until(lambda: receiver.counters.packets_received >= before + count,
                f"the receiver got the {count} packets")
    return receiver.counters.packets_received - before


def nothing_waiting(sock: socket.socket) -> bool:
    """True when nothing has arrived on the non-blocking ``sock``."""
    try:
        sock.recv(2048)
    except BlockingIOError:
        return True
    return False


async def test_a_spoofed_source_cannot_take_a_fresh_victims_path() -> None:
    """The victim keeps its media after a spoofed, correctly authenticated Binding Request
    for the attacker's own leg arrives from the victim's IP:port; the attempt is counted."""
    require_root()
    async with running_node(stun_rate=0) as node:
        victim = await connect(node, join(node, "m1", 1), RungName.UDP_5004)
        peer = await connect(node, join(node, "m1", 2), RungName.UDP_5004)
        mine = join(node, "m1", 3)  # the attacker's own, valid leg in the meeting
        try:
            assert victim.mapped is not None
            assert await media_flows(victim, peer) == 10
            request = build_leg_binding(mine.ice.node_ufrag, mine.ice.client_ufrag,
                                        mine.ice.pwd.get_secret_value().encode())
            spoofed_udp(victim.mapped, node.endpoint("udp/5004"), request)
            await until(lambda: node.engine.drops.get("latch_taken") == 1,
                        "the node refused the spoofed latch")
            assert await media_flows(victim, peer) == 10
            assert node.engine.drops.get("auth", 0) == 0
            assert node.engine.drops.get("latch_taken") == 1
        finally:
            for session in (victim, peer):
                session.close()


def sniff_binding(sniffer: socket.socket, node_port: int, deadline: float) -> bytes:
    """The first STUN Binding Request to ``node_port`` seen on ``lo``."""
    while time.monotonic() < deadline:
        try:
            frame = sniffer.recv(65535)
        except BlockingIOError:
            time.sleep(0.005)
            continue
        ip = frame[14:]  # lo frames carry an all-zero Ethernet header
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_UDP:
            continue
        ihl = (ip[0] & 0x0F) * 4
        _src, dst = struct.unpack("!HH", ip[ihl:ihl + 4])
        payload = ip[ihl + 8:]
        if dst == node_port and payload[:2] == b"\x00\x01":
            return bytes(payload)
    raise AssertionError("no Binding Request seen on lo")


async def test_a_captured_binding_replayed_from_elsewhere_moves_nothing() -> None:
    """The victim's exact authenticated request, sniffed and replayed from the attacker's
    socket, gets no answer, does not move the latch, and is counted as ``stun_replay``."""
    require_root()
    async with running_node(stun_rate=0) as node:
        victim_joined = join(node, "m1", 1)
        peer = await connect(node, join(node, "m1", 2), RungName.UDP_5004)
        target = node.endpoint("udp/5004")
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as sniff:
            sniff.bind(("lo", 0))
            sniff.setblocking(False)
            victim = await connect(node, victim_joined, RungName.UDP_5004)
            captured = await asyncio.to_thread(sniff_binding, sniff, target.port,
                                               time.monotonic() + HANG_S)
        attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        attacker.bind((node.info.address, 0))
        attacker.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_sendto(attacker, captured, target)
            await until(lambda: node.engine.drops.get("stun_replay") == 1,
                        "the node dropped the replay")
            assert nothing_waiting(attacker)  # dropped: no answer to the replayer
            assert await media_flows(peer, victim) == 10  # the victim still gets its media
            assert nothing_waiting(attacker)  # and the replayer none of it
        finally:
            attacker.close()
            for session in (victim, peer):
                session.close()
