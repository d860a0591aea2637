"""The ``sdp`` fuzz target (wire.sdp)."""

from __future__ import annotations

import contextlib

from tests.fuzz.targets.dtls import certificate
from wire.errors import SdpError
from wire.sdp import Candidate, build_answer, parse_offer


def sdp(data: bytes) -> None:
    """wire.sdp: any offer text parses or is an SdpError; a parsed offer is answered or is
    an SdpError (``unsupported``), never anything else."""
    try:
        offer = parse_offer(data.decode("utf-8", "replace"))
    except SdpError:
        return
    with contextlib.suppress(SdpError):
        answer = build_answer(
            offer, ice_ufrag="nodeUFRG", ice_pwd="nodePassword0123456789ab",
            fingerprint=str(certificate().fingerprint), session_id=1,
            candidates=[Candidate(foundation="1", component=1, transport="udp",
                                  priority=2130706431, ip="192.0.2.1", port=5004,
                                  type="host", tcptype=None)])
        assert "a=ice-lite" in answer.sdp
