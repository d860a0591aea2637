"""Pinhole's sans-I/O protocol core: STUN, RFC 4571 framing, RFC 7983 demux, RTP,
SRTP contexts, the transport ladder and device profiles, API models, TLS helpers.

Nothing here opens a socket, starts a task or reads a clock.
"""
