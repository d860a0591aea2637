"""How many streams a libsrtp session keeps: the bound a leg's SSRC check must hold."""

from __future__ import annotations

import pylibsrtp

from wire.srtp import SrtpReceiver


def kept_streams(session: SrtpReceiver, ssrcs: range | list[int]) -> int:
    """How many of ``ssrcs`` the libsrtp session keeps a stream for: libsrtp removes a
    stream it has (``srtp_remove_stream``) and refuses one it has not."""
    kept = 0
    for ssrc in ssrcs:
        try:
            session.session.remove_stream(ssrc)
        except pylibsrtp.Error:
            continue
        kept += 1
    return kept
