"""RTP and RTCP headers (RFC 3550 §5.1, §6.4.2): just what the relay and the client need.

The relay reads the SSRC from fixed offsets (no objects per packet); the
client parses headers to keep receive statistics and sends receiver reports.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from wire.errors import RtpError

RTP_VERSION: Final = 2
RTP_HEADER_LENGTH: Final = 12
RTCP_RR: Final = 201  # RFC 3550 §12.1


@dataclass(frozen=True, slots=True)
class RtpHeader:
    version: int
    padding: bool
    extension: bool
    csrc_count: int
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    header_length: int  # where the payload starts


def build_rtp(
    *,
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    marker: bool = False,
) -> bytes:
    """An RTP packet with no CSRCs and no extension (RFC 3550 §5.1)."""
    if not 0 <= payload_type <= 127:
        raise RtpError(f"payload type {payload_type} is outside 0-127")
    return struct.pack(
        "!BBHII", RTP_VERSION << 6, (int(marker) << 7) | payload_type,
        sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF,
    ) + payload


def parse_rtp_header(data: bytes) -> RtpHeader:
    if len(data) < RTP_HEADER_LENGTH:
        raise RtpError("RTP packet shorter than 12 bytes")
    b0, b1, sequence, timestamp, ssrc = struct.unpack_from("!BBHII", data)
    version = b0 >> 6
    if version != RTP_VERSION:
        raise RtpError(f"RTP version {version}, expected 2")
    csrc_count = b0 & 0x0F
    length = RTP_HEADER_LENGTH + 4 * csrc_count
    if length > len(data):
        raise RtpError(f"RTP header with {csrc_count} CSRCs longer than the packet")
    extension = bool(b0 & 0x10)
    if extension:  # RFC 3550 §5.3.1: 4-byte header then ``length`` 32-bit words
        if length + 4 > len(data):
            raise RtpError("RTP header extension longer than the packet")
        words = int.from_bytes(data[length + 2:length + 4], "big")
        length += 4 + 4 * words
        if length > len(data):
            raise RtpError("RTP header extension longer than the packet")
    return RtpHeader(
        version=version, padding=bool(b0 & 0x20), extension=extension,
        csrc_count=csrc_count, marker=bool(b1 & 0x80), payload_type=b1 & 0x7F,
        sequence=sequence, timestamp=timestamp, ssrc=ssrc, header_length=length,
    )


def rtp_ssrc(data: bytes) -> int:
    if len(data) < RTP_HEADER_LENGTH:
        raise RtpError("RTP packet shorter than 12 bytes")
    return int.from_bytes(data[8:12], "big")


def rtcp_sender_ssrc(data: bytes) -> int:
    if len(data) < 8:
        raise RtpError("RTCP packet shorter than 8 bytes")
    return int.from_bytes(data[4:8], "big")


@dataclass(frozen=True, slots=True)
class ReceptionReport:
    """One report block (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int  # 0-255: lost/expected × 256 since the last report
    cumulative_lost: int  # 24-bit signed
    highest_sequence: int  # extended highest sequence number received
    jitter: int  # in timestamp units
    last_sr: int = 0
    delay_since_last_sr: int = 0


def build_rtcp_receiver_report(*, ssrc: int, reports: Sequence[ReceptionReport] = ()) -> bytes:
    """An RTCP RR (RFC 3550 §6.4.2) with up to 31 report blocks."""
    if len(reports) > 31:
        raise RtpError("an RTCP receiver report holds at most 31 report blocks")
    body = bytearray(struct.pack("!I", ssrc & 0xFFFFFFFF))
    for r in reports:
        lost = max(-0x800000, min(0x7FFFFF, r.cumulative_lost)) & 0xFFFFFF
        body += struct.pack("!IIIIII", r.ssrc, ((r.fraction_lost & 0xFF) << 24) | lost,
                            r.highest_sequence & 0xFFFFFFFF, r.jitter & 0xFFFFFFFF,
                            r.last_sr & 0xFFFFFFFF, r.delay_since_last_sr & 0xFFFFFFFF)
    words = (4 + len(body)) // 4 - 1
    return struct.pack("!BBH", (RTP_VERSION << 6) | len(reports), RTCP_RR, words) + bytes(body)


def parse_rtcp_receiver_report(data: bytes) -> tuple[int, list[ReceptionReport]]:
    """The reporter's SSRC and its report blocks."""
    if len(data) < 8:
        raise RtpError("RTCP packet shorter than 8 bytes")
    b0, packet_type, words = struct.unpack_from("!BBH", data)
    if b0 >> 6 != RTP_VERSION:
        raise RtpError(f"RTCP version {b0 >> 6}, expected 2")
    if packet_type != RTCP_RR:
        raise RtpError(f"RTCP packet type {packet_type}, expected 201 (RR)")
    count = b0 & 0x1F
    if 4 * (words + 1) > len(data) or 8 + 24 * count > 4 * (words + 1):
        raise RtpError("RTCP receiver report longer than the packet")
    reports = []
    for i in range(count):
        s, lost, high, jitter, lsr, dlsr = struct.unpack_from("!IIIIII", data, 8 + 24 * i)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        reports.append(ReceptionReport(s, lost >> 24, cumulative, high, jitter, lsr, dlsr))
    return rtcp_sender_ssrc(data), reports
