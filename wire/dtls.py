"""DTLS-SRTP for WebRTC legs, sans I/O: a handshake that yields SRTP keys (RFC 5764, RFC 8827).

A WebRTC endpoint agrees SRTP keys with DTLS-SRTP. The media node is always
the DTLS *server* (``a=setup:passive`` in its answer, RFC 5763 §5); the client
role is there for tests and a node dialling another. One object per leg, in
the shape of aioquic's connection and ``wire.leg_client``::

    dtls = DtlsSrtp(certificate, DtlsRole.SERVER, Fingerprint.parse(sdp_value))
    send(dtls.start(now))                 # [] for a server, the ClientHello for a client
    send(dtls.receive(datagram, now))     # one datagram in, datagrams to send out
    at = dtls.timer()                     # call handle_timer(now) then, or never if None
    send(dtls.handle_timer(now))          # retransmissions
    dtls.keys                             # DtlsKeys once state is CONNECTED

It never reads a clock, opens a socket or sleeps: OpenSSL (pyOpenSSL) runs on
memory BIOs, records come in through :meth:`DtlsSrtp.receive` and go out as
the lists it returns, each item one UDP datagram of at most
:data:`DATAGRAM_MTU` bytes (whole records packed together, RFC 6347 §4.1.1).

- Identity (RFC 8122 §5, RFC 8827 §6.5): each side presents a self-signed
  certificate (:class:`DtlsCertificate`), the server asks for the client's
  (``VERIFY_PEER | VERIFY_FAIL_IF_NO_PEER_CERT``) and accepts any chain; the
  check that counts is the peer certificate's fingerprint against the one
  its SDP named, done when the handshake completes. A mismatch is FAILED
  ``"fingerprint"`` and nothing is exported.
- Keys (RFC 5764 §4.1.1, §4.1.2, §4.2): the profiles are offered with use_srtp in
  OpenSSL's names, the server choosing in its own order; none in common is
  FAILED ``"profile"`` on the server, which then sends nothing more. The keying
  material ``EXTRACTOR-dtls_srtp`` is split as client_write_key,
  server_write_key, client_write_salt, server_write_salt: a server protects
  with server key ‖ salt and opens with client key ‖ salt, a client the reverse.
- Network input never raises: a datagram that is too large or not DTLS
  (RFC 7983 §7: first byte 20-63) is dropped and counted, a record OpenSSL
  cannot use is discarded by it (RFC 6347 §4.1.2.7), a failed handshake is
  FAILED with :attr:`DtlsSrtp.failure` set, and after FAILED or CLOSED every
  datagram is dropped and counted. A peer can make us hold at most
  :data:`HANDSHAKE_BYTES_MAX` bytes of handshake and :data:`HANDSHAKE_TIMEOUT_S`
  of the caller's time.

Two clocks. OpenSSL keeps its DTLS retransmission timer on the process's
real clock and cannot be given another (pyOpenSSL does not bind
``DTLS_set_timer_cb``). This object keeps the schedule on the caller's ``now``
instead: once a flight is out and OpenSSL waits for an answer
(``DTLSv1_get_timeout()`` is not None), :meth:`DtlsSrtp.timer` is the send time
plus the retransmission timeout, 1 s doubling to 60 s (RFC 6347 §4.2.4.1, the
values OpenSSL uses too). When :meth:`DtlsSrtp.handle_timer` finds ``now``
past it, it first lets OpenSSL retransmit (``DTLSv1_handle_timeout``), which
OpenSSL does only if its own clock agrees that the timeout has passed; if it
has not (a caller clock running ahead of the process's, as a test's fake
clock), the object resends its copy of the last flight byte for byte. A
copy carries the same record sequence numbers, so a peer that had received
the flight discards it as a replay (RFC 6347 §4.1.2.6): it only repairs a
flight that was lost, which is what a retransmission is for. OpenSSL may
also retransmit on its own when a :meth:`DtlsSrtp.receive` finds its real
timer expired; that output is returned like any other. A server, whose last
flight has no timer, answers a peer that repeats its own last flight with
its last flight again (RFC 6347 §4.2.4, "Read retransmit" in FINISHED).

No HelloVerifyRequest cookie (RFC 6347 §4.2.1): the node answers DTLS only on
a path that ICE has already checked.

pyOpenSSL is imported by the methods that drive OpenSSL, when the first
association is made: a node makes its certificate and publishes its
fingerprint at start (``cryptography`` alone), but only a WebRTC leg needs
OpenSSL (README "Tests": a service imports only what its start needs).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from wire.errors import DtlsError
from wire.srtp import SrtpKeys, SrtpProfile

if TYPE_CHECKING:
    from OpenSSL import SSL

#: RFC 6347 §4.2.4.1: "an initial timer value of 1 second", doubled at each
#: retransmission up to "at least 60 seconds".
INITIAL_RTO_S: Final = 1.0
MAX_RTO_S: Final = 60.0
#: A handshake not finished this long after it started (caller's clock) is FAILED.
HANDSHAKE_TIMEOUT_S: Final = 30.0
#: Bytes of handshake a peer may send before we give up (its flights are about 2 kB).
HANDSHAKE_BYTES_MAX: Final = 65536
#: RFC 6347 §4.1 / RFC 5246 §6.2.3: a record's fragment is at most 2^14 + 2048
#: bytes, after a 13-byte header; a datagram larger than one such record is refused.
DATAGRAM_MAX: Final = 2**14 + 2048 + 13
#: What we send: records in datagrams of at most this many bytes, the MTU OpenSSL
#: fragments the handshake to (under IPv6's 1280-byte minimum link MTU).
DATAGRAM_MTU: Final = 1200
#: RFC 7983 §7: a first byte 20-63 is DTLS.
_DTLS_FIRST: Final = 20
_DTLS_LAST: Final = 63
#: RFC 6347 §4.1: type(1) version(2) epoch(2) sequence_number(6) length(2).
_RECORD_HEADER: Final = 13
#: RFC 6347 §4.1 / RFC 5246 §6.2.1: ContentType handshake(22).
_HANDSHAKE: Final = b"\x16"
#: How many times a server resends its last flight to a peer repeating its own.
FINAL_RESENDS_MAX: Final = 8
#: RFC 5764 §4.2: the exporter label of DTLS-SRTP keys.
EXPORTER_LABEL: Final = b"EXTRACTOR-dtls_srtp"
#: RFC 6347 §4.1: DTLS 1.2's wire version {254, 253}; RFC 8827 §6.5 asks for 1.2 or later.
_DTLS1_2_VERSION: Final = 0xFEFD
#: ECDHE with ECDSA (the certificates are P-256), AEAD first, as browsers offer.
_CIPHERS: Final = (b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                   b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-SHA")

#: RFC 8122 §5 hash functions we check (RFC 3279 names), with their digest size.
_DIGEST_SIZE: Final[dict[str, int]] = {
    "sha-1": 20, "sha-224": 28, "sha-256": 32, "sha-384": 48, "sha-512": 64,
}
_FINGERPRINT_TEXT_MAX: Final = 256
_UPPER_HEX: Final = frozenset("0123456789ABCDEF")


@dataclass(frozen=True, slots=True)
class _Layout:
    """A profile's use_srtp name (RFC 5764 §4.1.2; RFC 7714 §14.2) and key/salt sizes."""

    openssl: bytes
    key: int
    salt: int


_LAYOUT: Final[dict[SrtpProfile, _Layout]] = {
    SrtpProfile.AES_CM_128_HMAC_SHA1_80: _Layout(b"SRTP_AES128_CM_SHA1_80", 16, 14),
    SrtpProfile.AEAD_AES_128_GCM: _Layout(b"SRTP_AEAD_AES_128_GCM", 16, 12),
}
DEFAULT_PROFILES: Final = (SrtpProfile.AEAD_AES_128_GCM, SrtpProfile.AES_CM_128_HMAC_SHA1_80)


def _hex_pairs(digest: bytes) -> str:
    return ":".join(f"{byte:02X}" for byte in digest)


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A certificate fingerprint as SDP carries it (RFC 8122 §5): ``sha-256 AB:CD:...``."""

    algorithm: str  # lower case, one of the RFC 3279 names above
    value: str  # upper-case hex pairs joined by ':'

    def __post_init__(self) -> None:
        size = _DIGEST_SIZE.get(self.algorithm)
        if size is None:
            raise DtlsError("error", f"unsupported fingerprint hash function {self.algorithm!r}")
        pairs = self.value.split(":")
        if not all(len(pair) == 2 and _UPPER_HEX.issuperset(pair) for pair in pairs):
            raise DtlsError("error", "fingerprint value must be hex pairs separated by ':'")
        if len(pairs) != size:
            raise DtlsError("error", f"{self.algorithm} fingerprint must be {size} bytes, "
                            f"got {len(pairs)}")

    @classmethod
    def parse(cls, text: str) -> Fingerprint:
        """The value of an ``a=fingerprint`` attribute; a bad one is ``DtlsError("error")``.

        The hash function name is case-insensitive (RFC 8122 §5 "hash-func" is a
        token); hex digits of either case are accepted and kept upper case.
        """
        if len(text) > _FINGERPRINT_TEXT_MAX:
            raise DtlsError("error", "fingerprint is too long")
        parts = text.split()
        if len(parts) != 2:
            raise DtlsError("error", "fingerprint must be '<hash function> <hex pairs>'")
        return cls(parts[0].lower(), parts[1].upper())

    @classmethod
    def of(cls, der: bytes, algorithm: str = "sha-256") -> Fingerprint:
        """The fingerprint of a DER certificate (RFC 8122 §5: the hash of its DER form)."""
        if algorithm not in _DIGEST_SIZE:
            raise DtlsError("error", f"unsupported fingerprint hash function {algorithm!r}")
        return cls(algorithm, _hex_pairs(hashlib.new(algorithm.replace("-", ""), der).digest()))

    def matches(self, der: bytes) -> bool:
        """Whether the DER certificate has this fingerprint (compared in constant time)."""
        digest = hashlib.new(self.algorithm.replace("-", ""), der).digest()
        return hmac.compare_digest(bytes.fromhex(self.value.replace(":", "")), digest)

    def __str__(self) -> str:
        return f"{self.algorithm} {self.value}"


class DtlsCertificate:
    """A self-signed ECDSA P-256 certificate and its key, as browsers make them.

    The subject is a random name, the serial random, the validity from a day
    before ``now`` for 30 days (aiortc's and browsers' choice: the peer checks
    the fingerprint, not the dates). ``repr`` shows the fingerprint only.
    """

    __slots__ = ("_key", "certificate", "der", "fingerprint")

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self._key = key
        self.certificate = certificate
        self.der: bytes = certificate.public_bytes(serialization.Encoding.DER)
        self.fingerprint: Fingerprint = Fingerprint.of(self.der)

    @classmethod
    def generate(cls, now: datetime.datetime) -> DtlsCertificate:
        """A fresh key and certificate; ``now`` is the wall clock (a timezone-aware time)."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, secrets.token_hex(16))])
        certificate = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))
        return cls(key, certificate)

    def context(self, profiles: Sequence[SrtpProfile]) -> SSL.Context:
        """An OpenSSL DTLS context presenting this certificate and offering ``profiles``."""
        from OpenSSL import SSL

        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.set_min_proto_version(_DTLS1_2_VERSION)
        ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_QUERY_MTU | SSL.OP_NO_RENEGOTIATION)
        # RFC 8827 §6.5: the peer is authenticated by its fingerprint, checked after the
        # handshake; the chain of a self-signed certificate is accepted here.
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                       lambda _conn, _cert, _errno, _depth, _ok: True)
        ctx.use_certificate(self.certificate)
        ctx.use_privatekey(self._key)
        ctx.check_privatekey()
        ctx.set_cipher_list(_CIPHERS)
        ctx.set_tlsext_use_srtp(b":".join(_LAYOUT[p].openssl for p in profiles))
        return ctx

    def __repr__(self) -> str:
        return f"DtlsCertificate(fingerprint={self.fingerprint})"


class DtlsRole(StrEnum):
    SERVER = "server"  # the node, a=setup:passive
    CLIENT = "client"  # a=setup:active: tests, a node dialling another


class DtlsState(IntEnum):
    NEW = 0
    CONNECTING = 1
    CONNECTED = 2
    FAILED = 3
    CLOSED = 4


@dataclass(frozen=True, slots=True)
class DtlsKeys:
    """The negotiated profile and keys: ``local`` protects what we send, ``remote`` opens
    what the peer sends. ``repr`` shows no key material (``SrtpKeys`` redacts it)."""

    profile: SrtpProfile
    local: SrtpKeys
    remote: SrtpKeys


def split_records(data: bytes) -> list[bytes]:
    """DTLS records laid end to end (RFC 6347 §4.1), each whole; a truncated tail is one item."""
    records: list[bytes] = []
    offset = 0
    while offset < len(data):
        end = offset + _RECORD_HEADER
        if end <= len(data):
            end += int.from_bytes(data[end - 2:end], "big")
        records.append(data[offset:end])
        offset = end
    return records


def _datagrams(data: bytes) -> list[bytes]:
    """Records packed into datagrams of at most :data:`DATAGRAM_MTU` bytes (RFC 6347 §4.1.1)."""
    out: list[bytes] = []
    current = b""
    for record in split_records(data):
        if current and len(current) + len(record) > DATAGRAM_MTU:
            out.append(current)
            current = b""
        current += record
    if current:
        out.append(current)
    return out


def _openssl_reason(exc: SSL.Error) -> str:
    """OpenSSL's reason text of the first error in ``exc`` (no key material is in it)."""
    errors = exc.args[0] if exc.args else None
    if isinstance(errors, list) and errors and isinstance(errors[0], tuple):
        return str(errors[0][-1])
    return type(exc).__name__


class DtlsSrtp:
    """One DTLS-SRTP association, sans I/O (see the module docstring)."""

    __slots__ = ("_bytes_in", "_conn", "_deadline", "_flight", "_resends", "_rto", "_started",
                 "dropped", "failure", "keys", "profiles", "remote", "role", "state")

    def __init__(self, certificate: DtlsCertificate, role: DtlsRole, remote: Fingerprint,
                 profiles: Sequence[SrtpProfile] = DEFAULT_PROFILES) -> None:
        from OpenSSL import SSL

        if not profiles:
            raise DtlsError("error", "no SRTP profile to offer")
        self.role = role
        self.remote = remote
        self.profiles: tuple[SrtpProfile, ...] = tuple(profiles)
        self.state = DtlsState.NEW
        self.keys: DtlsKeys | None = None
        self.failure: DtlsError | None = None
        #: datagrams dropped, by reason: too_large, not_dtls, failed, closed, application_data
        self.dropped: Counter[str] = Counter()
        self._conn = SSL.Connection(certificate.context(self.profiles), None)
        self._conn.set_ciphertext_mtu(DATAGRAM_MTU)
        self._flight: list[bytes] = []  # the last flight sent, for a retransmission
        self._rto = INITIAL_RTO_S
        self._deadline: float | None = None  # when the last flight is retransmitted
        self._started = 0.0
        self._bytes_in = 0
        self._resends = 0

    def start(self, now: float) -> list[bytes]:
        """Begin: a client's first flight (the ClientHello); a server's is [] (it waits)."""
        if self.state is not DtlsState.NEW:
            return []
        self.state = DtlsState.CONNECTING
        self._started = now
        if self.role is DtlsRole.SERVER:
            self._conn.set_accept_state()
            return []
        self._conn.set_connect_state()
        return self._handshake(now)

    def receive(self, data: bytes, now: float) -> list[bytes]:
        """One datagram from the peer; the datagrams to send back. Never raises for its
        content: what cannot be used is dropped and counted, or fails the association."""
        if self.state is DtlsState.FAILED or self.state is DtlsState.CLOSED:
            self.dropped[self.state.name.lower()] += 1
            return []
        if len(data) > DATAGRAM_MAX:
            self.dropped["too_large"] += 1
            return []
        if not data or not _DTLS_FIRST <= data[0] <= _DTLS_LAST:
            self.dropped["not_dtls"] += 1
            return []
        out = self.start(now)
        self._conn.bio_write(data)
        if self.state is DtlsState.CONNECTING:
            self._bytes_in += len(data)
            if self._bytes_in > HANDSHAKE_BYTES_MAX:
                self._fail("handshake", f"DTLS handshake exceeded {HANDSHAKE_BYTES_MAX} bytes")
                return []
            return out + self._handshake(now)
        return self._read(data)

    def timer(self) -> float | None:
        """When :meth:`handle_timer` must be called (the caller's clock), or None."""
        if self.state is not DtlsState.CONNECTING:
            return None
        deadline = self._started + HANDSHAKE_TIMEOUT_S
        if self._deadline is not None and self._conn.DTLSv1_get_timeout() is not None:
            return min(self._deadline, deadline)
        return deadline

    def handle_timer(self, now: float) -> list[bytes]:
        """Retransmit the last flight if its timeout has passed; fail a handshake that
        has run out of time (``"handshake"``)."""
        if self.state is not DtlsState.CONNECTING:
            return []
        if now >= self._started + HANDSHAKE_TIMEOUT_S:
            self._fail("handshake", "DTLS handshake timed out")
            return []
        if (self._deadline is None or now < self._deadline
                or self._conn.DTLSv1_get_timeout() is None):
            return []
        from OpenSSL import SSL

        try:
            self._conn.DTLSv1_handle_timeout()  # retransmits only if OpenSSL's clock agrees
        except SSL.Error as exc:
            self._fail("handshake", f"DTLS handshake failed: {_openssl_reason(exc)}")
            return []
        out = self._drain()
        if out:
            self._flight = out
        else:
            out = list(self._flight)  # OpenSSL's clock is behind ours: resend our copy
        self._rto = min(self._rto * 2, MAX_RTO_S)
        self._deadline = now + self._rto
        return out

    def close(self) -> list[bytes]:
        """Our close_notify (RFC 5246 §7.2.1), to send; the association is CLOSED."""
        if self.state is DtlsState.FAILED or self.state is DtlsState.CLOSED:
            return []
        started = self.state is not DtlsState.NEW
        self.state = DtlsState.CLOSED
        if not started:
            return []
        from OpenSSL import SSL

        # SSL.Error: a close before the handshake got far enough to send an alert
        with contextlib.suppress(SSL.Error):
            self._conn.shutdown()
        return self._drain()

    def _handshake(self, now: float) -> list[bytes]:
        from OpenSSL import SSL

        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            out = self._drain()
            if out:  # a new flight: its timer starts now
                self._flight = out
                self._deadline = now + self._rto
            return out
        except SSL.Error as exc:
            self._fail("handshake", f"DTLS handshake failed: {_openssl_reason(exc)}")
            return []
        return self._complete()

    def _complete(self) -> list[bytes]:
        """The handshake is done: check the peer (RFC 8122 §5), the profile, export keys."""
        peer = self._conn.get_peer_certificate(as_cryptography=True)
        if peer is None:
            self._fail("handshake", "DTLS peer presented no certificate")
            return []
        if not self.remote.matches(peer.public_bytes(serialization.Encoding.DER)):
            self._fail("fingerprint", "DTLS peer certificate does not match its fingerprint")
            return []
        selected = self._conn.get_selected_srtp_profile()
        profile = next((p for p in self.profiles if _LAYOUT[p].openssl == selected), None)
        if profile is None:
            self._fail("profile", "no SRTP protection profile in common")
            return []
        layout = _LAYOUT[profile]
        material = self._conn.export_keying_material(EXPORTER_LABEL,
                                                     2 * (layout.key + layout.salt))
        # RFC 5764 §4.2: client key, server key, client salt, server salt.
        k, s = layout.key, layout.salt
        client = SrtpKeys(profile, material[0:k] + material[2 * k:2 * k + s])
        server = SrtpKeys(profile, material[k:2 * k] + material[2 * k + s:2 * k + 2 * s])
        local, remote = (server, client) if self.role is DtlsRole.SERVER else (client, server)
        self.keys = DtlsKeys(profile, local, remote)
        self.state = DtlsState.CONNECTED
        self._deadline = None
        # A server's last flight (ChangeCipherSpec, Finished) is kept for a peer that
        # did not get it (RFC 6347 §4.2.4, the FINISHED state); a client has none.
        out = self._drain()
        self._flight = out if self.role is DtlsRole.SERVER else []
        return out

    def _read(self, data: bytes) -> list[bytes]:
        """Records after the handshake: alerts, a retransmitted last flight, data (dropped).

        RFC 6347 §4.2.4 (FINISHED state, "Read retransmit"): a peer that sends its last
        flight again has not seen ours, and gets it again. OpenSSL resends it itself for a
        retransmission with new record numbers; for a copy of the same records, which it
        discards as a replay, this object resends its own copy, at most
        :data:`FINAL_RESENDS_MAX` times.
        """
        from OpenSSL import SSL

        handshake = any(record[:1] == _HANDSHAKE for record in split_records(data))
        while True:
            try:
                chunk = self._conn.recv(DATAGRAM_MAX)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:  # close_notify: RFC 5246 §7.2.1, answer with ours
                self.state = DtlsState.CLOSED
                with contextlib.suppress(SSL.Error):
                    self._conn.shutdown()
                break
            except SSL.Error as exc:
                self._fail("error", f"DTLS connection failed: {_openssl_reason(exc)}")
                return []
            if not chunk:
                break
            self.dropped["application_data"] += 1  # no data channel here
        out = self._drain()
        if (not out and handshake and self.state is DtlsState.CONNECTED and self._flight
                and self._resends < FINAL_RESENDS_MAX):
            self._resends += 1
            out = list(self._flight)
        return out

    def _drain(self) -> list[bytes]:
        from OpenSSL import SSL

        chunks: list[bytes] = []
        while True:
            try:
                chunks.append(self._conn.bio_read(DATAGRAM_MAX))
            except SSL.WantReadError:
                return _datagrams(b"".join(chunks))

    def _fail(self, reason: str, message: str) -> None:
        self.state = DtlsState.FAILED
        self.failure = DtlsError(reason, message)
        self._deadline = None

    def __repr__(self) -> str:
        profile = self.keys.profile.value if self.keys else None
        return f"DtlsSrtp(role={self.role.value}, state={self.state.name}, profile={profile})"
