"""coturn for a stack: TURN over TLS (RFC 8656 §3.1), the last rungs of a browser's ladder.

The loopback stack runs the real TURN server, Debian's ``coturn`` (``turnserver``),
with what WebRTC endpoints need of it and nothing more:

- one listener, TLS, on :data:`TURN_OCTET` of the stack's block (its own address, so
  that it can have 443 beside the cloud's 443), else on :data:`LAB_TURN_OCTET` (the
  firewall lab's, whose gateway holds .254), else on the cloud's address and another
  port; no plain UDP, TCP or DTLS listener, no telnet CLI, no RFC 5780 discovery;
- a certificate for that address, issued by the stack's CA (:mod:`lab.pki`), so that
  a client verifies it as it verifies the cloud;
- coturn's shared-secret scheme (``use-auth-secret``): the cloud mints short-lived
  credentials with the same secret (``cloud.turn``); the secret is in the 0600
  configuration file and ``turn-secret``, never on a command line;
- UDP relay ports in :data:`RELAY_PORTS`, relaying only to the stack's own block:
  coturn refuses loopback peers unless ``allow-loopback-peers``; every other address is
  denied and the block is allowed back (coturn's allow list wins over its deny list).

The stack (:mod:`lab.stack`) spawns ``turnserver -c FILE``, waits for a TLS handshake
with :func:`answers` and stops it with the others. docker-compose.yml's ``turn`` service
(:mod:`lab.turn_service`) writes the same configuration with a UDP listener on
:data:`UDP_PORT` beside TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import errno
import ipaddress
import secrets
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from lab.net import free_port
from lab.pki import Pki, write_secret
from wire.tls import CertifiedKey, client_context, issue

#: the TURN server's host number in the stack's ``/24`` (the cloud is .1, nodes .2 …)
TURN_OCTET: Final = 254
#: where the firewall lab puts it: its internet namespace holds .253 for it (:mod:`lab.netns`)
LAB_TURN_OCTET: Final = 253
REALM: Final = "pinhole"
#: coturn's relay ports: above Linux's ephemeral range (32768-60999), where the stack's
#: other processes take their free ports, so an allocation never finds its port taken
RELAY_PORTS: Final = (61000, 61999)
#: RFC 8656 §3.1: TURN over TLS on 443 passes firewalls that let only HTTPS out
TLS_PORT: Final = 443
#: TURN over UDP's default port (RFC 8656 §3.1); only docker-compose.yml's coturn listens on it
UDP_PORT: Final = 3478


@dataclass(frozen=True, slots=True)
class TurnServer:
    """Where a stack's coturn listens, and the files it runs from (in ``state_dir``)."""

    state_dir: Path
    address: str
    port: int

    @property
    def url(self) -> str:
        """Its TURN URI (RFC 7065 §3.1): TLS over TCP."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"turns:{host}:{self.port}?transport=tcp"

    @property
    def secret_file(self) -> Path:
        """The shared secret (0600): the cloud's ``--turn-secret-file``."""
        return self.state_dir / "turn-secret"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "turnserver.conf"

    @property
    def cert_file(self) -> Path:
        return self.state_dir / "turn.pem"

    @property
    def key_file(self) -> Path:
        return self.state_dir / "turn.key"

    @property
    def log_file(self) -> Path:
        """What coturn says (its stdout, where its configuration sends its log)."""
        return self.state_dir / "turn.log"

    def argv(self) -> list[str]:
        """``turnserver``'s arguments: only its configuration file."""
        return ["-c", str(self.config_file)]


def _can_bind(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EADDRINUSE,
                             errno.EADDRNOTAVAIL):
                return False
            raise
    return True


def place(prefix: str) -> tuple[str, int]:
    """Where a stack on ``prefix`` runs coturn: ``prefix.254`` (else ``prefix.253``, the
    firewall lab's) on 443 when this process may bind it, else on a free port; the cloud's
    address (``prefix.1``) and a free port when neither is an address of this host."""
    for octet in (TURN_OCTET, LAB_TURN_OCTET):
        own = f"{prefix}.{octet}"
        if _can_bind(own, 0):
            return own, TLS_PORT if _can_bind(own, TLS_PORT) else free_port(own)
    cloud = f"{prefix}.1"
    return cloud, free_port(cloud)


def peer_block(prefix: str) -> tuple[str, str]:
    """The first and last address of the stack's ``/24``: the only peers coturn relays to."""
    network = ipaddress.ip_network(f"{prefix}.0/24")
    return str(network.network_address), str(network.broadcast_address)


def config_text(server: TurnServer, prefix: str, secret: str,
                udp_port: int | None = None) -> str:
    """coturn's configuration (``man turnserver``) for ``server`` in the stack ``prefix``:
    TLS alone listens, and UDP on ``udp_port`` when one is given."""
    first, last = peer_block(prefix)
    udp = ["no-udp"] if udp_port is None else [f"listening-port={udp_port}"]
    lines = [
        f"listening-ip={server.address}",
        f"relay-ip={server.address}",
        f"tls-listening-port={server.port}",
        *udp, "no-tcp", "no-dtls",  # no plain TCP, no DTLS listener
        "no-tcp-relay",  # UDP allocations only (RFC 8656): RFC 6062 TCP relays are not needed
        "no-cli", "no-rfc5780", "no-tlsv1", "no-tlsv1_1",
        f"min-port={RELAY_PORTS[0]}", f"max-port={RELAY_PORTS[1]}",
        "relay-threads=1",
        f"realm={REALM}", "fingerprint",
        "use-auth-secret", f"static-auth-secret={secret}",
        f"cert={server.cert_file}", f"pkey={server.key_file}",
        "no-multicast-peers",
        "denied-peer-ip=0.0.0.0-255.255.255.255",
        "denied-peer-ip=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        f"allowed-peer-ip={first}-{last}",
        "log-file=stdout", "simple-log",
        f"pidfile={server.state_dir / 'turnserver.pid'}",
        f"userdb={server.state_dir / 'turndb'}",  # coturn opens one even with a static secret
    ]
    if ipaddress.ip_address(first).is_loopback:
        lines.append("allow-loopback-peers")  # the allow list above narrows it to the block
    return "\n".join(lines) + "\n"


def write_certificate(server: TurnServer, pki: Pki, now: datetime.datetime) -> None:
    """coturn's certificate for its address, issued at ``now`` by the CA in ``pki`` (the key
    0600)."""
    ca = CertifiedKey(pki.ca_file.read_bytes(), pki.ca_key_file.read_bytes())
    certified = issue(ca, [server.address], now)
    write_secret(server.key_file, certified.key_pem.decode())
    server.cert_file.write_text(certified.cert_pem.decode())


def write_turn_files(pki: Pki, prefix: str, address: str, port: int,
                     now: datetime.datetime | None = None) -> TurnServer:
    """coturn's certificate (from the stack's CA), a new shared secret and its
    configuration, in the PKI's directory; the key, the secret and the configuration
    0600."""
    server = TurnServer(pki.directory, address, port)
    write_certificate(server, pki, now or datetime.datetime.now(datetime.UTC))
    secret = secrets.token_urlsafe(32)
    write_secret(server.secret_file, secret)
    write_secret(server.config_file, config_text(server, prefix, secret))
    return server


async def answers(server: TurnServer, ca_file: Path | str, timeout_s: float = 2.0) -> bool:
    """Whether ``server`` completes a TLS handshake now, its certificate verified against
    ``ca_file`` for its address."""
    context: ssl.SSLContext = client_context(str(ca_file))
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(
                server.address, server.port, ssl=context, server_hostname=server.address)
    except (OSError, TimeoutError):  # ssl.SSLError is an OSError
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
