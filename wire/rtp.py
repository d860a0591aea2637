"""RTP and RTCP headers (RFC 3550 §5.1, §5.3.1, §6.4.1, §6.4.2): what the relay and client need.

The relay reads the SSRC from fixed offsets (no objects per packet); the
client parses headers to keep receive statistics and sends receiver reports.

    RFC 3550 §5.1 fixed header (12 bytes)
    |V=2|P|X|  CC   |M|     PT      |       sequence number         |
    |                           timestamp                           |
    |                             SSRC                              |
    |                  CSRC list (CC × 4 bytes)                     |
    |  extension (§5.3.1: 2 bytes profile, 2 bytes length in words) |
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from wire.errors import RtpError

RTP_VERSION: Final = 2
RTP_HEADER_LENGTH: Final = 12  # RFC 3550 §5.1
RTCP_HEADER_LENGTH: Final = 8  # RFC 3550 §6.4.2: common header + reporter SSRC
RTCP_RR: Final = 201  # RFC 3550 §12.1
REPORT_BLOCK_LENGTH: Final = 24  # RFC 3550 §6.4.1
MAX_REPORT_BLOCKS: Final = 31  # RFC 3550 §6.4.2: RC is 5 bits

_FIXED: Final = struct.Struct("!BBHII")
_U32: Final = struct.Struct("!I")
_RTCP_COMMON: Final = struct.Struct("!BBH")
_BLOCK: Final = struct.Struct("!IIIIII")


@dataclass(frozen=True, slots=True)
class RtpHeader:
    """The fixed RTP header (RFC 3550 §5.1); ``header_length`` is where the payload starts."""

    version: int
    padding: bool
    extension: bool
    csrc_count: int
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    header_length: int  # 12 + 4 × CC + the §5.3.1 extension if X


def build_rtp(
    *,
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    marker: bool = False,
) -> bytes:
    """An RTP packet with no CSRCs and no extension (RFC 3550 §5.1).

    Sequence, timestamp and SSRC wrap to their field widths (16, 32, 32 bits).
    """
    if not 0 <= payload_type <= 127:
        raise RtpError(f"payload type {payload_type} is outside 0-127")
    return _FIXED.pack(
        RTP_VERSION << 6, (int(marker) << 7) | payload_type,
        sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF,
    ) + payload


def parse_rtp_header(data: bytes) -> RtpHeader:
    """The header of an RTP packet, checked against the packet's length (RFC 3550 §5.1)."""
    n = len(data)
    if n < RTP_HEADER_LENGTH:
        raise RtpError("RTP packet shorter than 12 bytes")
    b0, b1, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
    version = b0 >> 6
    if version != RTP_VERSION:
        raise RtpError(f"RTP version {version}, expected 2")
    csrc_count = b0 & 0x0F
    length = RTP_HEADER_LENGTH + 4 * csrc_count
    if length > n:
        raise RtpError(f"RTP header with {csrc_count} CSRCs longer than the packet")
    extension = bool(b0 & 0x10)
    if extension:  # RFC 3550 §5.3.1: 4-byte header then ``length`` 32-bit words
        if length + 4 > n:
            raise RtpError("RTP header extension longer than the packet")
        words = (data[length + 2] << 8) | data[length + 3]
        length += 4 + 4 * words
        if length > n:
            raise RtpError("RTP header extension longer than the packet")
    return RtpHeader(
        version=version, padding=bool(b0 & 0x20), extension=extension,
        csrc_count=csrc_count, marker=bool(b1 & 0x80), payload_type=b1 & 0x7F,
        sequence=sequence, timestamp=timestamp, ssrc=ssrc, header_length=length,
    )


def rtp_ssrc(data: bytes) -> int:
    """The SSRC of an RTP packet (bytes 8-11, RFC 3550 §5.1); only the length is checked."""
    if len(data) < RTP_HEADER_LENGTH:
        raise RtpError("RTP packet shorter than 12 bytes")
    ssrc: int = _U32.unpack_from(data, 8)[0]
    return ssrc


def rtcp_sender_ssrc(data: bytes) -> int:
    """The SSRC of an RTCP packet's sender (bytes 4-7, RFC 3550 §6.4.1, §6.4.2)."""
    if len(data) < RTCP_HEADER_LENGTH:
        raise RtpError("RTCP packet shorter than 8 bytes")
    ssrc: int = _U32.unpack_from(data, 4)[0]
    return ssrc


@dataclass(frozen=True, slots=True)
class ReceptionReport:
    """One report block (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int  # 0-255: lost/expected × 256 since the last report
    cumulative_lost: int  # 24-bit signed; clamped on the wire
    highest_sequence: int  # extended highest sequence number received
    jitter: int  # interarrival jitter in timestamp units
    last_sr: int = 0  # LSR: middle 32 bits of the last SR's NTP timestamp
    delay_since_last_sr: int = 0  # DLSR, in units of 1/65536 s


def build_rtcp_receiver_report(*, ssrc: int, reports: Sequence[ReceptionReport] = ()) -> bytes:
    """An RTCP RR (RFC 3550 §6.4.2) with up to 31 report blocks."""
    count = len(reports)
    if count > MAX_REPORT_BLOCKS:
        raise RtpError("an RTCP receiver report holds at most 31 report blocks")
    size = RTCP_HEADER_LENGTH + REPORT_BLOCK_LENGTH * count
    out = bytearray(size)
    # length: the packet's size in 32-bit words minus one (RFC 3550 §6.4.1)
    _RTCP_COMMON.pack_into(out, 0, (RTP_VERSION << 6) | count, RTCP_RR, size // 4 - 1)
    _U32.pack_into(out, 4, ssrc & 0xFFFFFFFF)
    offset = RTCP_HEADER_LENGTH
    for r in reports:
        lost = max(-0x800000, min(0x7FFFFF, r.cumulative_lost)) & 0xFFFFFF
        fraction = max(0, min(0xFF, r.fraction_lost))
        _BLOCK.pack_into(out, offset, r.ssrc & 0xFFFFFFFF, (fraction << 24) | lost,
                         r.highest_sequence & 0xFFFFFFFF, r.jitter & 0xFFFFFFFF,
                         r.last_sr & 0xFFFFFFFF, r.delay_since_last_sr & 0xFFFFFFFF)
        offset += REPORT_BLOCK_LENGTH
    return bytes(out)


def parse_rtcp_receiver_report(data: bytes) -> tuple[int, list[ReceptionReport]]:
    """The reporter's SSRC and its report blocks, from an RTCP RR (RFC 3550 §6.4.2)."""
    if len(data) < RTCP_HEADER_LENGTH:
        raise RtpError("RTCP packet shorter than 8 bytes")
    b0, packet_type, words = _RTCP_COMMON.unpack_from(data)
    if b0 >> 6 != RTP_VERSION:
        raise RtpError(f"RTCP version {b0 >> 6}, expected 2")
    if packet_type != RTCP_RR:
        raise RtpError(f"RTCP packet type {packet_type}, expected 201 (RR)")
    count = b0 & 0x1F
    declared = 4 * (words + 1)
    if declared > len(data) or RTCP_HEADER_LENGTH + REPORT_BLOCK_LENGTH * count > declared:
        raise RtpError("RTCP receiver report longer than the packet")
    reports: list[ReceptionReport] = []
    for i in range(count):
        s, lost, high, jitter, lsr, dlsr = _BLOCK.unpack_from(
            data, RTCP_HEADER_LENGTH + REPORT_BLOCK_LENGTH * i)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        reports.append(ReceptionReport(s, lost >> 24, cumulative, high, jitter, lsr, dlsr))
    return rtcp_sender_ssrc(data), reports


# ---------------------------------------------------------------- rewriting for WebRTC legs

#: RFC 4585 §6.1: transport-layer (RTPFB) and payload-specific (PSFB) feedback
RTCP_RTPFB: Final = 205
RTCP_PSFB: Final = 206
#: RFC 4585 §6.2.1 Generic NACK; §6.3.1 PLI; RFC 5104 §4.3.1 FIR
FMT_NACK: Final = 1
FMT_PLI: Final = 1
FMT_FIR: Final = 4
#: RFC 4585 §6.1: header, sender SSRC, media source SSRC
FEEDBACK_HEADER_LENGTH: Final = 12


def rewrite_rtp(clear: bytes, *, payload_type: int, ssrc: int) -> bytes:
    """A copy of a clear RTP packet with its payload type and SSRC replaced (RFC 3550 §5.1).

    The marker bit, sequence number, timestamp and everything after byte 11 are kept:
    a translator that maps one source onto one stream of the receiver's
    (RFC 3550 §7.1; a media translator of RFC 7667, rewriting SSRCs).
    """
    if len(clear) < RTP_HEADER_LENGTH:
        raise RtpError("RTP packet shorter than 12 bytes")
    if not 0 <= payload_type <= 127:
        raise RtpError(f"payload type {payload_type} is outside 0-127")
    out = bytearray(clear)
    out[1] = (out[1] & 0x80) | payload_type
    _U32.pack_into(out, 8, ssrc & 0xFFFFFFFF)
    return bytes(out)


def split_rtcp(compound: bytes) -> list[bytes]:
    """The packets of a compound RTCP packet, each checked against its length field
    (RFC 3550 §6.1, §6.4.1: length in 32-bit words minus one)."""
    packets: list[bytes] = []
    offset, n = 0, len(compound)
    while offset < n:
        if n - offset < 4:
            raise RtpError("RTCP packet shorter than its 4-byte header")
        b0, _, words = _RTCP_COMMON.unpack_from(compound, offset)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError(f"RTCP version {b0 >> 6}, expected 2")
        end = offset + 4 * (words + 1)
        if end > n:
            raise RtpError("RTCP packet longer than the datagram")
        packets.append(compound[offset:end])
        offset = end
    return packets


def feedback_target(packet: bytes) -> int | None:
    """The SSRC whose sender a feedback packet is for, or ``None`` if it is not NACK,
    PLI or FIR: the media source SSRC (RFC 4585 §6.1) or, for FIR, whose media source
    field is 0, the SSRC of its first FCI entry (RFC 5104 §4.3.1.1)."""
    if len(packet) < FEEDBACK_HEADER_LENGTH:
        return None
    fmt, packet_type = packet[0] & 0x1F, packet[1]
    if packet_type == RTCP_RTPFB and fmt == FMT_NACK:
        return int(_U32.unpack_from(packet, 8)[0])
    if packet_type == RTCP_PSFB and fmt == FMT_PLI:
        return int(_U32.unpack_from(packet, 8)[0])
    if packet_type == RTCP_PSFB and fmt == FMT_FIR and len(packet) >= FEEDBACK_HEADER_LENGTH + 8:
        return int(_U32.unpack_from(packet, FEEDBACK_HEADER_LENGTH)[0])
    return None


def retarget_feedback(packet: bytes, ssrc: int) -> bytes:
    """A copy of a NACK, PLI or FIR packet that names ``ssrc`` as its media source (and,
    for FIR, in every FCI entry: RFC 5104 §4.3.1.2), for the sender that owns it."""
    out = bytearray(packet)
    if packet[1] == RTCP_PSFB and packet[0] & 0x1F == FMT_FIR:
        for entry in range(FEEDBACK_HEADER_LENGTH, len(out) - 7, 8):
            _U32.pack_into(out, entry, ssrc & 0xFFFFFFFF)
    else:
        _U32.pack_into(out, 8, ssrc & 0xFFFFFFFF)
    return bytes(out)
