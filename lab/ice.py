"""``python -m lab.ice``: aioice's own ICE agent gathers its candidates against a media node.

A teaching tool for docs/labs/08-ice-mapping.md. It runs an :class:`aioice.Connection` (an
RFC 8445 agent) with a Pinhole media node as its STUN server (and, when given, a TURN server)
and prints the candidates it gathered in SDP form (RFC 8839 §5.1): ``host`` (an address of
this machine), ``srflx`` (server-reflexive: the address the node saw, i.e. the firewall's
outside address) and ``relay`` (an address allocated on the TURN server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import aioice

from edge import measure


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab.ice", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stun", type=_host_port, default=None,
                   help="a media node's UDP endpoint, HOST:PORT (e.g. 198.18.0.2:5004), as the "
                   "agent's STUN server (default: none, so no server-reflexive candidate)")
    p.add_argument("--turn", type=_host_port, default=None,
                   help="a TURN server, HOST:PORT (default: none, so no relayed candidate)")
    p.add_argument("--turn-user", default=None, help="TURN long-term credential: user")
    p.add_argument("--turn-password", default=None, help="TURN long-term credential: password")
    p.add_argument("--turn-transport", default="udp", choices=["udp", "tcp"],
                   help="transport to the TURN server (tcp: TURN-TCP, RFC 6062's analogue of "
                   "Pinhole's tcp/5004 rung) (default: udp)")
    p.add_argument("--relay-only", action="store_true",
                   help="gather relayed candidates only (the 'relay' transport policy)")
    p.add_argument("--timeout-s", type=float, default=5.0,
                   help="give up gathering after this long (default: 5)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    return p


async def gather(args: argparse.Namespace) -> list[aioice.Candidate]:
    """The candidates aioice's agent gathers for one component, IPv4 only."""
    connection = aioice.Connection(
        ice_controlling=True, stun_server=args.stun, turn_server=args.turn,
        turn_username=args.turn_user, turn_password=args.turn_password,
        turn_transport=args.turn_transport, use_ipv6=False,
        transport_policy=(aioice.TransportPolicy.RELAY if args.relay_only
                          else aioice.TransportPolicy.ALL))
    try:
        await asyncio.wait_for(connection.gather_candidates(), args.timeout_s)
        # highest priority first: host, server-reflexive, relayed (RFC 8445 §5.1.2.2)
        return sorted(connection.local_candidates, key=lambda c: -c.priority)
    finally:
        await connection.close()


def main(argv: list[str] | None = None) -> int:
    measure.start_if_asked(os.environ)  # under make test (edge/measure.py)
    args = _parser().parse_args(argv)
    servers = [f"{kind} {s[0]}:{s[1]}" for kind, s in (("STUN", args.stun), ("TURN", args.turn))
               if s is not None]
    if not servers:
        print("python -m lab.ice: give --stun HOST:PORT (a media node) or --turn HOST:PORT",
              file=sys.stderr)
        return 2
    print(f"gathering candidates with aioice {aioice.__version__} ({', '.join(servers)})",
          file=sys.stderr)
    try:
        candidates = asyncio.run(gather(args))
    except TimeoutError:
        print(f"python -m lab.ice: no answer within {args.timeout_s:g} s; check that the "
              "server answers on that address (pinhole probe), or try --relay-only",
              file=sys.stderr)
        return 1
    except (OSError, ConnectionError) as exc:
        print(f"python -m lab.ice: gathering failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([{"type": c.type, "transport": c.transport, "host": c.host,
                           "port": c.port, "priority": c.priority,
                           "related_address": c.related_address, "sdp": c.to_sdp()}
                          for c in candidates]))
    else:
        for candidate in candidates:
            print(f"{candidate.type:6} a=candidate:{candidate.to_sdp()}")
    return 0 if any(c.type != "host" for c in candidates) else 1


if __name__ == "__main__":
    sys.exit(main())
