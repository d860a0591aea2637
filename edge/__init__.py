"""Pinhole's service floor: what every process shares above the protocol core.

``wire`` below it holds the protocols only (STUN, RTP, SRTP, RFC 4571 framing, RFC 7983
demux, ICE-lite, the leg client, TLS helpers), sans-I/O. ``edge`` is where a process meets
the outside, and the services (``cloud``, ``media_node``, ``client``) share it:

- :mod:`edge.flags`: its command line and ``PINHOLE_*`` variables, one settings layer;
- :mod:`edge.boundary`: its one error boundary (a line on stderr and an exit code);
- :mod:`edge.admission`: the caps on its open connections;
- :mod:`edge.files`: the files it reads back (``stack.json``, caches);
- :mod:`edge.heap`: its memory once started;
- :mod:`edge.leg_transport`: asyncio UDP, TCP, TLS and proxy-tunnel legs, for a
  participant's media and a node's cascade alike.

Import the module you need; this face hands nothing on.
"""
