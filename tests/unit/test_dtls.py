"""DTLS-SRTP sans I/O (RFC 5764, RFC 8827, RFC 8122) on memory BIOs and a fake clock:
the handshake, the keys and their layout, profiles, fingerprints, hostile input,
retransmission, close, and aiortc's DTLS transport as a peer nobody here wrote."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from typing import Final, cast

import pytest
from aiortc.rtcdtlstransport import (
    RTCCertificate,
    RTCDtlsFingerprint,
    RTCDtlsParameters,
    RTCDtlsTransport,
)
from aiortc.rtcicetransport import RTCIceTransport
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from wire.dtls import (
    DATAGRAM_MAX,
    DATAGRAM_MTU,
    FINAL_RESENDS_MAX,
    HANDSHAKE_BYTES_MAX,
    HANDSHAKE_TIMEOUT_S,
    DtlsCertificate,
    DtlsRole,
    DtlsSrtp,
    DtlsState,
    Fingerprint,
    _datagrams,
    split_records,
)
from wire.errors import DtlsError
from wire.rtp import build_rtp
from wire.srtp import SrtpProfile, SrtpReceiver, SrtpSender, master_length

GCM = SrtpProfile.AEAD_AES_128_GCM
CM = SrtpProfile.AES_CM_128_HMAC_SHA1_80
WALL = datetime.datetime(2030, 5, 17, 12, 0, tzinfo=datetime.UTC)
SERVER_CERT = DtlsCertificate.generate(WALL)
CLIENT_CERT = DtlsCertificate.generate(WALL)
OTHER_CERT = DtlsCertificate.generate(WALL)
Datagrams = list[bytes]


def _pair(server_profiles: tuple[SrtpProfile, ...] = (GCM, CM),
          client_profiles: tuple[SrtpProfile, ...] = (GCM, CM),
          server_sees: Fingerprint | None = None,
          client_sees: Fingerprint | None = None) -> tuple[DtlsSrtp, DtlsSrtp]:
    """A client and a server, each told the other's fingerprint (or the one given)."""
    client = DtlsSrtp(CLIENT_CERT, DtlsRole.CLIENT, client_sees or SERVER_CERT.fingerprint,
                      client_profiles)
    server = DtlsSrtp(SERVER_CERT, DtlsRole.SERVER, server_sees or CLIENT_CERT.fingerprint,
                      server_profiles)
    return client, server


def _state(dtls: DtlsSrtp) -> DtlsState:
    """The state, read through a call: mypy keeps no narrowing from an earlier assert."""
    return dtls.state


def _feed(to: DtlsSrtp, datagrams: Datagrams, now: float) -> Datagrams:
    out: Datagrams = []
    for datagram in datagrams:
        out += to.receive(datagram, now)
    return out


def _flights(client: DtlsSrtp, server: DtlsSrtp, now: float = 0.0) -> list[Datagrams]:
    """Every flight of a lossless handshake, client's first, until nobody sends."""
    flights = [client.start(now)]
    assert server.start(now) == []
    receivers = (server, client)
    while flights[-1]:
        flights.append(_feed(receivers[(len(flights) - 1) % 2], flights[-1], now))
    return flights[:-1]


def _rtp(seq: int) -> bytes:
    return build_rtp(payload_type=111, sequence=seq, timestamp=seq * 960, ssrc=0x1234,
                     payload=bytes([seq]) * 80)


def _srtp_both_ways(client: DtlsSrtp, server: DtlsSrtp) -> None:
    """RTP protected with one side's local keys opens with the other's remote keys."""
    assert client.keys is not None and server.keys is not None
    assert SrtpReceiver(client.keys.remote).unprotect(
        SrtpSender(server.keys.local).protect(_rtp(1))) == _rtp(1)
    assert SrtpReceiver(server.keys.remote).unprotect(
        SrtpSender(client.keys.local).protect(_rtp(2))) == _rtp(2)


def test_client_and_server_connect_with_crosswise_keys() -> None:
    """RFC 5764 §4.2: one exporter output, the client's write key and salt are what the
    server reads with, and the reverse; SRTP protected by one opens at the other."""
    client, server = _pair()
    flights = _flights(client, server)
    assert len(flights) == 4  # RFC 6347 §4.2.4: ClientHello, server's, client's, server's
    assert client.state is DtlsState.CONNECTED and server.state is DtlsState.CONNECTED
    assert client.keys is not None and server.keys is not None
    assert client.keys.profile is server.keys.profile is GCM  # the server's first choice
    assert client.keys.local == server.keys.remote and client.keys.remote == server.keys.local
    assert client.keys.local.master != client.keys.remote.master
    assert len(client.keys.local.master) == master_length(GCM)
    _srtp_both_ways(client, server)
    assert client.timer() is None and server.timer() is None
    assert client.failure is None and server.failure is None


def test_every_datagram_fits_the_mtu_and_holds_whole_records() -> None:
    """RFC 6347 §4.1.1: records do not span datagrams; §4.1.1.1: datagrams fit the PMTU."""
    client, server = _pair()
    for flight in _flights(client, server):
        for datagram in flight:
            assert len(datagram) <= DATAGRAM_MTU
            records = split_records(datagram)
            assert b"".join(records) == datagram
            assert all(len(r) == 13 + int.from_bytes(r[11:13], "big") for r in records)


@pytest.mark.parametrize("profile", [GCM, CM])
def test_a_client_offering_one_profile_gets_it(profile: SrtpProfile) -> None:
    """RFC 5764 §4.1.1: the server picks one of the client's profiles; RFC 3711 §8.2 and
    RFC 7714 §12: 30 and 28 bytes of key and salt."""
    client, server = _pair(client_profiles=(profile,))
    _flights(client, server)
    assert client.keys is not None and server.keys is not None
    assert client.keys.profile is server.keys.profile is profile
    assert len(server.keys.local.master) == master_length(profile)
    _srtp_both_ways(client, server)


def test_the_server_chooses_in_its_own_order() -> None:
    """RFC 5764 §4.1.1: the server selects; both offer both profiles in opposite orders."""
    client, server = _pair(server_profiles=(CM, GCM), client_profiles=(GCM, CM))
    _flights(client, server)
    assert client.keys is not None and client.keys.profile is CM


def test_no_common_profile_fails_the_server_and_the_client_times_out() -> None:
    """RFC 5764 §4.1.1: no profile in common, no keys; the server sends nothing more, so
    the client's handshake ends at its deadline."""
    client, server = _pair(server_profiles=(GCM,), client_profiles=(CM,))
    flights = _flights(client, server)
    assert len(flights) == 3  # the server's last flight is never sent
    assert server.state is DtlsState.FAILED and server.keys is None
    assert server.failure is not None and server.failure.reason == "profile"
    assert str(server.failure) == "no SRTP protection profile in common"
    assert client.state is DtlsState.CONNECTING
    assert client.timer() is not None
    assert client.handle_timer(HANDSHAKE_TIMEOUT_S) == []
    assert _state(client) is DtlsState.FAILED and client.keys is None
    assert client.failure is not None and client.failure.reason == "handshake"
    assert str(client.failure) == "DTLS handshake timed out"
    assert client.timer() is None


def test_server_refuses_a_client_certificate_with_another_fingerprint() -> None:
    """RFC 8122 §5, RFC 8827 §6.5: the peer's certificate must match its SDP fingerprint;
    the server checks it and exports nothing, and sends no Finished."""
    client, server = _pair(server_sees=OTHER_CERT.fingerprint)
    flights = _flights(client, server)
    assert len(flights) == 3
    assert server.state is DtlsState.FAILED and server.keys is None
    assert server.failure is not None and server.failure.reason == "fingerprint"
    assert str(server.failure) == "DTLS peer certificate does not match its fingerprint"
    assert client.state is DtlsState.CONNECTING and client.keys is None


def test_client_refuses_a_server_certificate_with_another_fingerprint() -> None:
    """RFC 8122 §5: the client checks the server's certificate the same way."""
    client, server = _pair(client_sees=OTHER_CERT.fingerprint)
    _flights(client, server)
    assert client.state is DtlsState.FAILED and client.keys is None
    assert client.failure is not None and client.failure.reason == "fingerprint"


@pytest.mark.parametrize("algorithm", ["sha-1", "sha-224", "sha-384", "sha-512"])
def test_other_hash_functions_are_checked_too(algorithm: str) -> None:
    """RFC 8122 §5: the fingerprint may use another hash function of the registry."""
    client, server = _pair(server_sees=Fingerprint.of(CLIENT_CERT.der, algorithm))
    _flights(client, server)
    assert server.state is DtlsState.CONNECTED


def test_wrong_fingerprint_of_the_right_length_in_another_algorithm_fails() -> None:
    """RFC 8122 §5: a sha-1 value that is not the certificate's does not pass."""
    wrong = Fingerprint.of(OTHER_CERT.der, "sha-1")
    client, server = _pair(server_sees=wrong)
    _flights(client, server)
    assert server.failure is not None and server.failure.reason == "fingerprint"


def test_non_dtls_empty_and_oversized_datagrams_are_dropped_and_counted() -> None:
    """RFC 7983 §7: only a first byte 20-63 is DTLS; RFC 6347 §4.1: no record exceeds
    2^14 + 2048 bytes of fragment. None of them moves the handshake or raises."""
    client, server = _pair()
    hello = client.start(0.0)
    for junk in (b"", b"\x00\x01", b"\x80" + bytes(40), b"\x40" + bytes(40)):
        assert server.receive(junk, 0.0) == []
    assert server.receive(b"\x16" + bytes(DATAGRAM_MAX), 0.0) == []
    assert server.dropped == {"not_dtls": 4, "too_large": 1}
    assert _feed(server, hello, 0.0)  # still answers the real ClientHello


_HELLO_BODY: Final = 13 + 12 + 2 + 32  # record header, handshake header, version, random
_IGNORED: Final[dict[str, Callable[[bytes], bytes]]] = {
    "truncated": lambda h: h[:40],
    "record version": lambda h: h[:1] + b"\x00\x00" + h[3:],
    "record length": lambda h: h[:11] + (len(h) + 50).to_bytes(2, "big") + h[13:],
    "epoch": lambda h: h[:3] + b"\x00\x05" + h[5:],
}


@pytest.mark.parametrize("mangle", _IGNORED.values(), ids=_IGNORED.keys())
def test_truncated_and_mangled_records_are_ignored(mangle: Callable[[bytes], bytes]) -> None:
    """RFC 6347 §4.1.2.7: invalid records are silently discarded; the handshake goes on."""
    client, server = _pair()
    hello = client.start(0.0)
    assert server.receive(mangle(hello[0]), 0.0) == []
    assert server.state is DtlsState.CONNECTING and server.failure is None
    assert client.receive(b"\x17\xfe\xfd" + bytes(20), 0.0) == []  # data before any keys
    last = _feed(server, _feed(client, _feed(server, hello, 0.0), 0.0), 0.0)
    _feed(client, last, 0.0)
    assert {client.state, server.state} == {DtlsState.CONNECTED}


def test_a_fragment_that_never_completes_is_held_only_until_the_deadline() -> None:
    """RFC 6347 §4.2.3: a first fragment announcing a 65535-byte ClientHello is kept for
    reassembly (OpenSSL then ignores the genuine, shorter one); the handshake deadline
    and HANDSHAKE_BYTES_MAX bound what it costs."""
    client, server = _pair()
    hello = client.start(0.0)[0]
    assert server.receive(hello[:14] + b"\x00\xff\xff" + hello[17:], 0.0) == []
    assert _feed(server, [hello], 0.0) == []
    assert server.state is DtlsState.CONNECTING and server.timer() == HANDSHAKE_TIMEOUT_S
    server.handle_timer(HANDSHAKE_TIMEOUT_S)
    assert server.failure is not None and str(server.failure) == "DTLS handshake timed out"


@pytest.mark.parametrize(("mangle", "message"), [
    (lambda h: h[:13] + b"\x63" + h[14:], "DTLS handshake failed: unexpected message"),
    (lambda h: h[:_HELLO_BODY + 2] + b"\xff\xff" + h[_HELLO_BODY + 4:],
     "DTLS handshake failed: length mismatch"),
], ids=["message type", "cipher suites length"])
def test_a_malformed_client_hello_fails_the_handshake(mangle: Callable[[bytes], bytes],
                                                      message: str) -> None:
    """RFC 5246 §7.2.2 (RFC 6347 §4.1): a well-formed record with a handshake message
    that cannot be parsed ends the handshake: FAILED "handshake", no exception."""
    client, server = _pair()
    assert server.receive(mangle(client.start(0.0)[0]), 0.0) == []
    assert server.state is DtlsState.FAILED
    assert server.failure is not None and server.failure.reason == "handshake"
    assert str(server.failure) == message


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=1600), st.sampled_from([20, 21, 22, 23, 63]))
def test_any_datagram_never_raises(body: bytes, first: int) -> None:
    """RFC 6347 §4.1.2.7: bad records are discarded; a handshake that cannot go on is
    FAILED with a reason, never an exception out of receive."""
    server = DtlsSrtp(SERVER_CERT, DtlsRole.SERVER, CLIENT_CERT.fingerprint)
    server.start(0.0)
    server.receive(bytes([first]) + body, 0.0)
    server.receive(bytes([first, 0xFE, 0xFD]) + body, 0.0)
    assert server.state in (DtlsState.CONNECTING, DtlsState.FAILED)
    assert (server.failure is None) == (server.state is DtlsState.CONNECTING)


def test_handshake_bytes_are_bounded() -> None:
    """A peer cannot make the node hold an endless handshake (bounded input)."""
    server = DtlsSrtp(SERVER_CERT, DtlsRole.SERVER, CLIENT_CERT.fingerprint)
    junk = b"\x16\xfe\xfd" + bytes(1197)
    for _ in range(HANDSHAKE_BYTES_MAX // len(junk)):
        server.receive(junk, 0.0)
    assert server.state is DtlsState.CONNECTING
    server.receive(junk, 0.0)
    assert _state(server) is DtlsState.FAILED
    assert server.failure is not None and server.failure.reason == "handshake"
    assert str(server.failure) == f"DTLS handshake exceeded {HANDSHAKE_BYTES_MAX} bytes"


def test_after_failure_input_is_ignored() -> None:
    """A FAILED association stays failed: later datagrams, even a real handshake, are
    dropped and counted."""
    client, server = _pair(server_sees=OTHER_CERT.fingerprint)
    flights = _flights(client, server)
    assert server.state is DtlsState.FAILED
    for flight in flights[::2]:
        assert _feed(server, flight, 0.0) == []
    assert server.dropped["failed"] == sum(len(f) for f in flights[::2])
    assert server.keys is None and server.timer() is None and server.handle_timer(99.0) == []


@pytest.mark.parametrize("closer", ["client", "server"])
def test_close_sends_close_notify_and_the_peer_closes(closer: str) -> None:
    """RFC 5246 §7.2.1 (RFC 6347 §4.1): close_notify ends the association at the peer;
    what comes after is ignored."""
    client, server = _pair()
    _flights(client, server)
    first, second = (client, server) if closer == "client" else (server, client)
    notify = first.close()
    assert notify and all(d[0] == 21 for d in notify)  # RFC 5246 §6.2.1: alert(21)
    assert first.state is DtlsState.CLOSED and first.close() == []
    reply = _feed(second, notify, 0.0)
    assert reply and all(d[0] == 21 for d in reply)  # §7.2.1: "MUST respond with" its own
    assert second.state is DtlsState.CLOSED and second.failure is None
    assert second.receive(notify[0], 0.0) == [] and second.dropped["closed"] == 1


def test_close_before_start_sends_nothing() -> None:
    """Nothing was said, nothing to close."""
    server = DtlsSrtp(SERVER_CERT, DtlsRole.SERVER, CLIENT_CERT.fingerprint)
    assert server.close() == [] and server.state is DtlsState.CLOSED
    assert server.start(0.0) == [] and server.state is DtlsState.CLOSED


def test_a_lost_server_flight_is_recovered_on_the_fake_clock() -> None:
    """RFC 6347 §4.2.4, §4.2.4.1: each side retransmits its last flight when its timer
    (1 s, then doubled) expires; the caller's clock drives it, not the real one."""
    client, server = _pair()
    hello = client.start(0.0)
    assert client.timer() == 1.0
    lost = _feed(server, hello, 0.0)
    assert lost and server.timer() == 1.0
    assert client.handle_timer(0.999) == [] and server.handle_timer(0.999) == []
    # OpenSSL's own timer (real clock) has not run out: the copies are the object's
    again = client.handle_timer(1.0)
    assert again == hello and client.timer() == 3.0  # RFC 6347 §4.2.4.1: doubled
    assert _feed(server, again, 1.0) == []  # a copy: the server saw those records
    repeat = server.handle_timer(1.0)
    assert repeat == lost and server.timer() == 3.0
    last = _feed(server, _feed(client, repeat, 1.0), 1.0)
    _feed(client, last, 1.0)
    assert {client.state, server.state} == {DtlsState.CONNECTED}
    _srtp_both_ways(client, server)


def test_a_lost_client_flight_is_recovered_by_the_clients_timer() -> None:
    """RFC 6347 §4.2.4: the client's retransmitted flight brings the handshake through."""
    client, server = _pair()
    server_flight = _feed(server, client.start(0.0), 0.0)
    lost = _feed(client, server_flight, 0.5)
    assert client.timer() == 1.5
    again = client.handle_timer(1.5)
    assert again == lost
    last = _feed(server, again, 1.5)
    _feed(client, last, 1.5)
    assert {client.state, server.state} == {DtlsState.CONNECTED}


def test_a_lost_last_server_flight_is_resent_when_the_client_repeats() -> None:
    """RFC 6347 §4.2.4, FINISHED state: "Read retransmit" → retransmit the last flight;
    the server has no timer of its own then. Bounded resends."""
    client, server = _pair()
    server.start(0.0)
    assert _feed(server, _feed(client, _feed(server, client.start(0.0), 0.0), 0.0), 0.0)
    # the server is CONNECTED; its last flight is lost
    assert server.state is DtlsState.CONNECTED and client.state is DtlsState.CONNECTING
    assert server.timer() is None
    again = client.handle_timer(1.0)
    resent = _feed(server, again, 1.0)
    assert resent
    _feed(client, resent, 1.0)
    assert _state(client) is DtlsState.CONNECTED
    _srtp_both_ways(client, server)
    for _ in range(FINAL_RESENDS_MAX):
        _feed(server, again, 2.0)
    assert _feed(server, again, 2.0) == []


def test_the_handshake_has_a_deadline_on_the_callers_clock() -> None:
    """A peer that stops answering leaves no handshake open past HANDSHAKE_TIMEOUT_S."""
    client, _ = _pair()
    client.start(10.0)
    now = 10.0
    while client.state is DtlsState.CONNECTING:
        at = client.timer()
        assert at is not None and at > now
        now = at
        client.handle_timer(now)
    assert now == 10.0 + HANDSHAKE_TIMEOUT_S
    assert client.failure is not None and str(client.failure) == "DTLS handshake timed out"


def test_no_key_material_in_repr_str_or_errors() -> None:
    """Keys are secrets: no repr, str or error shows them (docs/design.md "SRTP")."""
    client, server = _pair()
    _flights(client, server)
    assert server.keys is not None
    shown = repr(server) + str(server) + repr(server.keys) + repr(SERVER_CERT)
    for keys in (server.keys.local, server.keys.remote):
        assert keys.master.hex() not in shown.lower() and keys.master.hex()[:8] not in shown
    assert "redacted" in repr(server.keys)
    assert repr(server) == "DtlsSrtp(role=server, state=CONNECTED, profile=AEAD_AES_128_GCM)"


def test_fingerprint_parse_normalises_and_round_trips() -> None:
    """RFC 8122 §5: hash-func SP hex pairs; hash names are case-insensitive."""
    text = str(SERVER_CERT.fingerprint)
    assert Fingerprint.parse(text) == SERVER_CERT.fingerprint
    lowered = Fingerprint.parse(" SHA-256  " + SERVER_CERT.fingerprint.value.lower() + "\r\n")
    assert lowered == SERVER_CERT.fingerprint and str(lowered) == text
    assert Fingerprint.parse(text).matches(SERVER_CERT.der)
    assert not Fingerprint.parse(text).matches(CLIENT_CERT.der)


@pytest.mark.parametrize(("text", "message"), [
    ("", "fingerprint must be '<hash function> <hex pairs>'"),
    ("sha-256", "fingerprint must be '<hash function> <hex pairs>'"),
    ("sha-256 AB CD", "fingerprint must be '<hash function> <hex pairs>'"),
    ("md5 " + ":".join(["AB"] * 16), "unsupported fingerprint hash function 'md5'"),
    ("sha-256 " + ":".join(["AB"] * 31), "sha-256 fingerprint must be 32 bytes, got 31"),
    ("sha-1 " + ":".join(["AB"] * 32), "sha-1 fingerprint must be 20 bytes, got 32"),
    ("sha-256 " + ":".join(["AB"] * 31) + ":G1", "fingerprint value must be hex pairs "
     "separated by ':'"),
    ("sha-256 " + "AB" * 32, "fingerprint value must be hex pairs separated by ':'"),
    ("sha-256 " + ":".join(["ABC"] * 32), "fingerprint value must be hex pairs separated by ':'"),
    ("sha-256 ::", "fingerprint value must be hex pairs separated by ':'"),
    ("sha-512 " + "A" * 300, "fingerprint is too long"),
])
def test_fingerprint_parse_refuses_bad_text(text: str, message: str) -> None:
    """RFC 8122 §5 grammar: bad attribute values are refused with exact messages."""
    with pytest.raises(DtlsError) as caught:
        Fingerprint.parse(text)
    assert str(caught.value) == message and caught.value.reason == "error"


def test_a_fingerprint_built_directly_is_checked_the_same_way() -> None:
    """RFC 8122 §5 (UHEX): a Fingerprint not from parse() is held to the same grammar,
    so a malformed one never reaches the handshake's check."""
    value = SERVER_CERT.fingerprint.value
    assert Fingerprint("sha-256", value) == SERVER_CERT.fingerprint
    with pytest.raises(DtlsError, match=r"^fingerprint value must be hex pairs separated"):
        Fingerprint("sha-256", value.lower())
    with pytest.raises(DtlsError, match=r"^unsupported fingerprint hash function 'SHA-256'$"):
        Fingerprint("SHA-256", value)
    with pytest.raises(DtlsError, match=r"^unsupported fingerprint hash function 'md5'$"):
        Fingerprint.of(SERVER_CERT.der, "md5")


def test_certificate_fingerprint_is_the_sha256_of_its_der() -> None:
    """RFC 8122 §5: the fingerprint is the hash of the DER certificate, as
    `openssl x509 -fingerprint -sha256` prints it."""
    digest = SERVER_CERT.certificate.fingerprint(hashes.SHA256())
    assert SERVER_CERT.fingerprint.algorithm == "sha-256"
    assert SERVER_CERT.fingerprint.value == ":".join(f"{b:02X}" for b in digest)
    assert SERVER_CERT.fingerprint != CLIENT_CERT.fingerprint


def test_certificate_is_a_fresh_self_signed_p256() -> None:
    """RFC 8827 §6.5 (self-signed, identified by fingerprint); dates around `now`."""
    cert = SERVER_CERT.certificate
    assert cert.issuer == cert.subject
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert cert.not_valid_before_utc == WALL - datetime.timedelta(days=1)
    assert cert.not_valid_after_utc == WALL + datetime.timedelta(days=30)
    assert cert.serial_number != CLIENT_CERT.certificate.serial_number
    assert cert.subject != CLIENT_CERT.certificate.subject


def test_no_profile_to_offer_is_refused() -> None:
    """RFC 5764 §4.1.1: use_srtp lists at least one profile."""
    with pytest.raises(DtlsError, match=r"^no SRTP profile to offer$"):
        DtlsSrtp(SERVER_CERT, DtlsRole.SERVER, CLIENT_CERT.fingerprint, ())


class _IcePipe:
    """What aiortc's DTLS transport needs of its ICE transport: datagrams both ways."""

    role = "controlled"

    def __init__(self) -> None:
        self.to_aiortc: asyncio.Queue[bytes] = asyncio.Queue()
        self.from_aiortc: asyncio.Queue[bytes] = asyncio.Queue()

    async def _recv(self) -> bytes:
        data = await self.to_aiortc.get()
        if not data:
            raise ConnectionError
        return data

    async def _send(self, data: bytes) -> None:
        self.from_aiortc.put_nowait(data)


async def _pump(ours: DtlsSrtp, pipe: _IcePipe) -> None:
    loop = asyncio.get_running_loop()
    while True:
        data = await pipe.from_aiortc.get()
        for datagram in ours.receive(data, loop.time()):
            pipe.to_aiortc.put_nowait(datagram)


@pytest.mark.parametrize("role", [DtlsRole.SERVER, DtlsRole.CLIENT])
@pytest.mark.parametrize("profile", [GCM, CM])
async def test_interop_with_aiortc(role: DtlsRole, profile: SrtpProfile) -> None:
    """RFC 5764 against aiortc's RTCDtlsTransport (its own certificate, fingerprint check,
    use_srtp and RFC 5764 §4.2 key split): both connect, SRTP flows both ways, and
    aiortc's stop() (close_notify) closes ours."""
    theirs = RTCCertificate.generateCertificate()
    their_fp = next(f for f in theirs.getFingerprints() if f.algorithm == "sha-256")
    mine = DtlsCertificate.generate(datetime.datetime.now(datetime.UTC))
    ours = DtlsSrtp(mine, role, Fingerprint.parse(f"sha-256 {their_fp.value}"), (profile,))
    pipe = _IcePipe()
    transport = RTCDtlsTransport(cast(RTCIceTransport, pipe), [theirs])
    transport._set_role("client" if role is DtlsRole.SERVER else "server")
    for datagram in ours.start(asyncio.get_running_loop().time()):
        pipe.to_aiortc.put_nowait(datagram)
    pump = asyncio.create_task(_pump(ours, pipe))
    try:
        remote = RTCDtlsParameters(
            fingerprints=[RTCDtlsFingerprint("sha-256", mine.fingerprint.value)])
        await asyncio.wait_for(transport.start(remote), 10)
        assert transport.state == "connected"
        for _ in range(100):  # our side takes aiortc's last flight off the queue
            if ours.state is not DtlsState.CONNECTING:
                break
            await asyncio.sleep(0)
        assert ours.state is DtlsState.CONNECTED and ours.keys is not None
        assert ours.keys.profile is profile
        from_them = transport._tx_srtp.protect(_rtp(7))
        assert SrtpReceiver(ours.keys.remote).unprotect(from_them) == _rtp(7)
        to_them = SrtpSender(ours.keys.local).protect(_rtp(8))
        assert transport._rx_srtp.unprotect(to_them) == _rtp(8)
        await transport.stop()
        for _ in range(100):
            if _state(ours) is DtlsState.CLOSED:
                break
            await asyncio.sleep(0)
        assert _state(ours) is DtlsState.CLOSED and ours.failure is None
    finally:
        pump.cancel()
        pipe.to_aiortc.put_nowait(b"")


def _record(length: int, content: int = 22) -> bytes:
    """A DTLS 1.2 record (RFC 6347 §4.1): type, version, epoch, sequence, length, fragment."""
    return bytes([content, 0xFE, 0xFD]) + bytes(8) + length.to_bytes(2, "big") + bytes(length)


def test_records_are_split_by_their_length_and_a_torn_tail_stays_one_item() -> None:
    """RFC 6347 §4.1: records lie end to end, each 13 bytes of header and its length."""
    a, b = _record(5), _record(0)
    assert split_records(a + b) == [a, b]
    assert split_records(a + b[:7]) == [a, b[:7]]  # a header cut short
    assert split_records(a[:10]) == [a[:10]]
    assert split_records(b"") == []


def test_records_are_packed_into_datagrams_of_at_most_the_mtu() -> None:
    """RFC 6347 §4.1.1: a record never spans datagrams; several share one while they fit."""
    small, big = _record(100), _record(DATAGRAM_MTU - 13 - 50)
    packed = _datagrams(small + small + big + small)
    assert packed == [small + small, big, small]  # 1150 + 113 would pass the 1200
    fits = _record(DATAGRAM_MTU - 13 - len(small))  # with small: exactly the MTU
    assert _datagrams(fits + small) == [fits + small]
