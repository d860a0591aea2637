"""``pinhole-lab turn``: docker-compose.yml's TURN server, coturn on the stack's PKI.

The ``turn`` service starts once the cloud is healthy, so the cloud's first step
(``pinhole-lab pki``) has written the stack's CA and the TURN secret into the shared
volume. It then:

- issues coturn a certificate for its address from that CA, at every start (as the
  loopback stack does, :mod:`lab.turn`), so that a client verifies it as it verifies
  the cloud;
- writes coturn's configuration (0600) with the secret the cloud mints credentials with
  (``turn-secret``, the cloud's ``PINHOLE_TURN_SECRET_FILE``): coturn's
  ``use-auth-secret`` scheme, the secret on no command line;
- listens on its address for TURN over UDP on :data:`~lab.turn.UDP_PORT` and TURN over TLS
  on :data:`~lab.turn.TLS_PORT` (RFC 8656 §3.1), and relays only to the ``/24`` of that
  address (the compose network it is on);
- and becomes ``turnserver -c FILE``: Compose's signals reach coturn itself.

Exit code 2 when the CA, its key or the secret is not there, or coturn is not installed.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from edge.flags import Parser, add_version, apply_environment
from lab.firewall import LabError
from lab.pki import Pki, write_secret
from lab.turn import TLS_PORT, UDP_PORT, TurnServer, config_text, write_certificate

#: the state volume of docker-compose.yml
STATE_DIR = Path("/var/lib/pinhole")


def urls(address: str) -> list[str]:
    """The TURN URIs (RFC 7065 §3.1) of a ``turn`` service on ``address``: what the cloud's
    ``PINHOLE_TURN_URL`` lists, UDP first."""
    return [f"turn:{address}:{UDP_PORT}?transport=udp", f"turns:{address}:{TLS_PORT}?transport=tcp"]


def prepare(state_dir: Path, address: str, now: datetime.datetime) -> TurnServer:
    """coturn's certificate and configuration in ``state_dir``, for ``address`` (IPv4), from
    the CA and the TURN secret there; :class:`~lab.firewall.LabError` when one is missing."""
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        raise LabError(f"--listen {address!r} is not an IPv4 address") from None
    pki = Pki(state_dir, "", "")
    server = TurnServer(state_dir, address, TLS_PORT)
    try:
        secret = pki.turn_secret_file.read_text().strip()
        write_certificate(server, pki, now)
    except OSError as exc:
        raise LabError(f"the stack's PKI in {state_dir} is not whole ({exc}): the cloud's "
                       "first step, pinhole-lab pki, writes it; start the turn service after "
                       "the cloud") from None
    if not secret:
        raise LabError(f"{pki.turn_secret_file} is empty")
    prefix = address.rpartition(".")[0]
    write_secret(server.config_file, config_text(server, prefix, secret, udp_port=UDP_PORT))
    return server


def parser() -> Parser:
    p = Parser(
        prog="pinhole-lab turn",
        description="The TURN server of docker-compose.yml: coturn with a certificate from "
        "the stack's CA and the secret the cloud mints TURN credentials with, on UDP "
        f"{UDP_PORT} and TLS {TLS_PORT}. Runs after the cloud's pinhole-lab pki step.")
    add_version(p)
    p.add_argument("--state-dir", type=Path, default=STATE_DIR,
                   help="where the stack's CA and TURN secret are; coturn's files go there")
    p.add_argument("--listen", required=True,
                   help="address to bind (IPv4): coturn listens and relays on it")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    apply_environment(p, os.environ)
    args = p.parse_args(argv)
    binary = shutil.which("turnserver")
    if binary is None:
        print("pinhole-lab turn: coturn's turnserver is not installed (Debian: apt-get "
              "install coturn)", file=sys.stderr)
        return 2
    try:
        server = prepare(args.state_dir, args.listen, datetime.datetime.now(datetime.UTC))
    except LabError as exc:
        print(f"pinhole-lab turn: {exc}", file=sys.stderr)
        return 2
    print(f"pinhole-lab turn: coturn on {', '.join(urls(server.address))}", file=sys.stderr,
          flush=True)
    os.execv(binary, [binary, *server.argv()])
