"""The ``rtp`` fuzz target (wire.rtp)."""

from __future__ import annotations

import contextlib

from wire.errors import RtpError
from wire.multiplex import classify
from wire.rtp import parse_rtcp_receiver_report, parse_rtp_header, rtcp_sender_ssrc, rtp_ssrc


def rtp(data: bytes) -> None:
    """wire.rtp: RTP/RTCP header parsers raise only RtpError."""
    for parse in (parse_rtp_header, rtp_ssrc, rtcp_sender_ssrc, parse_rtcp_receiver_report):
        with contextlib.suppress(RtpError):
            parse(data)
    classify(data)
