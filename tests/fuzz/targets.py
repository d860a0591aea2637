"""Fuzz targets: one function per parser or boundary, ``bytes`` in, nothing out.

Each target feeds its input to a parser the network or a client reaches and
checks the parser's contract: it returns, or raises only its documented
error (a ``WireError`` subclass, pydantic's ``ValidationError``). Anything
else (``IndexError``, ``RecursionError``, ``UnicodeEncodeError`` ...) escapes
and is a crash. Where a parser has a property beyond "does not crash", the
target asserts it too (answers at most twice the request; frames re-encode
to the bytes they came from; SRTP round trips).

Used by the long, coverage-guided run (``tests/fuzz/__main__.py``, atheris)
and by the replay of the saved corpus and of past crashes in the test suite.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import functools
import json
import shutil
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, SecretStr, ValidationError

from client.cache import NodeListCache
from client.cache import _read_model as read_model
from cloud.http import decode_json
from cloud.openapi import OPERATIONS
from cloud.registry import _from_node as from_node
from edge.files import IdentityFile, ReportFile, StackFile
from media_node.control import _from_cloud as from_cloud
from media_node.engine import Engine
from wire.dtls import DATAGRAM_MTU, DtlsCertificate, DtlsRole, DtlsSrtp
from wire.errors import BodyError, FramingError, RtpError, SdpError, SrtpError, StunError
from wire.models import (
    AllocateLeg,
    IceCredentials,
    PayloadTypeMap,
    SendSlot,
    SrtpParams,
    WebRtcLegParams,
)
from wire.multiplex import FrameDecoder, classify, encode_frame
from wire.rtp import (
    build_rtp,
    parse_rtcp_receiver_report,
    parse_rtp_header,
    rtcp_sender_ssrc,
    rtp_ssrc,
)
from wire.sdp import Candidate, build_answer, parse_offer
from wire.srtp import SrtpKeys, SrtpProfile, SrtpReceiver, SrtpSender
from wire.stun import build_leg_binding, parse_binding_response, validate_request
from wire.tls import issue, server_context
from wire.tls_stream import ServerTls
from wire.transports import RungName

Target = Callable[[bytes], None]

PWD: Final = b"fuzz+pwd+0123456789abc"
KEYS: Final = {p: SrtpKeys(p, bytes(range(32))[: _len]) for p, _len in
               ((SrtpProfile.AES_CM_128_HMAC_SHA1_80, 30), (SrtpProfile.AEAD_AES_128_GCM, 28))}


def _lookup(ufrag: str) -> bytes | None:
    return PWD if ufrag == "nodeufrag" else None


def stun(data: bytes) -> None:
    """wire.stun: the server-side validator never raises; error answers stay small."""
    result = validate_request(data, _lookup, software="fuzz-node")
    if result.reply is not None:
        assert len(result.reply) <= max(2 * len(data), 20), "amplification"
    for pwd in (None, PWD):
        with contextlib.suppress(StunError):
            parse_binding_response(data, pwd=pwd)


def _frames(chunks: list[bytes]) -> tuple[list[bytes], int] | None:
    decoder = FrameDecoder(512)
    frames: list[bytes] = []
    try:
        for chunk in chunks:
            frames += decoder.feed(chunk)
    except FramingError:
        return None
    return frames, decoder.pending


def framing(data: bytes) -> None:
    """RFC 4571 framing (wire.multiplex): any split gives the same frames (or error)."""
    cut = data[0] % (len(data) + 1) if data else 0
    whole = _frames([data])
    assert _frames([data[:cut], data[cut:]]) == whole, "the split changed the frames"
    assert _frames([data[i:i + 1] for i in range(len(data))]) == whole, "byte by byte"
    if whole is not None:
        frames, pending = whole
        assert sum(len(encode_frame(f)) for f in frames) + pending <= len(data)


def rtp(data: bytes) -> None:
    """wire.rtp: RTP/RTCP header parsers raise only RtpError."""
    for parse in (parse_rtp_header, rtp_ssrc, rtcp_sender_ssrc, parse_rtcp_receiver_report):
        with contextlib.suppress(RtpError):
            parse(data)
    classify(data)


def srtp(data: bytes) -> None:
    """wire.srtp: unprotect raises only SrtpError; protect/unprotect round trip."""
    profile = list(KEYS)[data[0] % 2] if data else SrtpProfile.AES_CM_128_HMAC_SHA1_80
    receiver = SrtpReceiver(KEYS[profile])
    for unprotect in (receiver.unprotect, receiver.unprotect_rtcp):
        with contextlib.suppress(SrtpError):
            unprotect(data)
    packet = build_rtp(payload_type=0, sequence=len(data) % 65536, timestamp=7, ssrc=1234,
                       payload=data[:1200])
    fresh = SrtpReceiver(KEYS[profile])
    assert fresh.unprotect(SrtpSender(KEYS[profile]).protect(packet)) == packet


def _engine() -> tuple[Engine, Any]:
    engine = Engine("fuzz-node", stun_rate=0)
    keys = KEYS[SrtpProfile.AES_CM_128_HMAC_SHA1_80].to_b64()
    engine.allocate(AllocateLeg(
        request_id="r1", leg_id="leg-1", meeting_id="m1", participant_id="p1", ssrc=1111,
        ice=IceCredentials(node_ufrag="nodeufrag", client_ufrag="client",
                           pwd=SecretStr(PWD.decode())),
        srtp=SrtpParams(profile=SrtpProfile.AES_CM_128_HMAC_SHA1_80.value,
                        client_to_node=SecretStr(keys), node_to_client=SecretStr(keys))), 0.0)
    return engine, _Sink()


class _Sink:
    rung = RungName.UDP_5004

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes, addr: Any) -> None:
        self.sent.append(data)


def engine(data: bytes) -> None:
    """media_node.engine: any datagram is answered, relayed or dropped and counted."""
    node, sink = _engine()
    node.on_packet(data, sink, ("192.0.2.1", 4000), 1.0)
    for answer in sink.sent:
        assert len(answer) <= max(2 * len(data), 20) or node.legs["leg-1"].sink is not None


def control_from_node(data: bytes) -> None:
    """cloud.registry: a node's control message validates or is a ValidationError."""
    with contextlib.suppress(ValidationError):
        from_node.validate_json(data)


def control_from_cloud(data: bytes) -> None:
    """media_node.control: a cloud command validates or is a ValidationError; an
    allocate_leg that validates never makes the engine raise (bad keys: ok false)."""
    command: object = None
    with contextlib.suppress(ValidationError):
        command = from_cloud.validate_json(data)
    node = Engine("fuzz-node", stun_rate=0)
    if isinstance(command, AllocateLeg):
        node.allocate(command, 0.0)
    # the keys and credentials of a valid command, taken from the input
    text = data.decode("latin-1")
    half = len(text) // 2
    with contextlib.suppress(ValidationError):
        fuzzed = AllocateLeg.model_validate({
            "request_id": "r", "leg_id": "leg-x", "meeting_id": "m", "participant_id": "p",
            "ssrc": len(data), "ice": {"node_ufrag": "node" + text[:8], "client_ufrag": "cli0",
                                       "pwd": "p" * 22},
            "srtp": {"profile": "AEAD_AES_128_GCM" if len(data) % 2 else
                     "AES_CM_128_HMAC_SHA1_80", "client_to_node": text[:half],
                     "node_to_client": text[half:]}})
        answer = node.allocate(fuzzed, 0.0)
        assert answer.leg_id == "leg-x"


_BODIES: Final[tuple[type[BaseModel], ...]] = tuple(
    op.request for op in OPERATIONS if op.request is not None)


def api_body(data: bytes) -> None:
    """The cloud's body reader and every request model: BodyError or ValidationError only."""
    try:
        value = decode_json(data, max_bytes=256 * 1024)
    except BodyError:
        return
    # what was accepted is JSON (no NaN) and valid Unicode (no lone surrogate)
    json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    model = _BODIES[len(data) % len(_BODIES)]
    with contextlib.suppress(ValidationError):
        model.model_validate(value)


@functools.cache
def _server_context() -> ssl.SSLContext:
    made = issue(None, ["127.0.0.1"], datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "c.pem"), Path(tmp, "c.key")
        cert.write_bytes(made.cert_pem)
        key.write_bytes(made.key_pem)
        return server_context(str(cert), str(key))


def tls(data: bytes) -> None:
    """wire.tls_stream: the node's TLS takes any bytes, in any chunks; ssl.SSLError only."""
    server = ServerTls(_server_context())
    cut = data[0] % (len(data) + 1) if data else 0
    try:
        server.receive(data[:cut])
        server.receive(data[cut:])
    except ssl.SSLError:
        return
    server.data_to_send()


@functools.cache
def _files() -> Path:
    """cache_files' scratch folder: made on first use (not at import: every process that
    imports the targets left one behind) and removed at exit. libFuzzer ends a run without
    Python's exit handlers, so ``python -m tests.fuzz`` also runs each target with its own
    TMPDIR, which it removes."""
    path = Path(tempfile.mkdtemp(prefix="pinhole-fuzz-files-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def stack_json(data: bytes) -> None:
    """``pinhole --stack FILE``: stack.json validates or is a ValidationError (the CLI turns
    it into a usage error naming the file)."""
    with contextlib.suppress(ValidationError):
        StackFile.model_validate_json(data)


def cache_files(data: bytes) -> None:
    """The client's caches (identity, probe report, node list) as read from disk: any bytes
    give the model or None, never an exception; a corrupt identity or report file is set
    aside (renamed ``*.corrupt``) so that it is rebuilt."""
    identity, report = _files() / "identity.json", _files() / "report.json"
    identity.write_bytes(data)
    report.write_bytes(data)
    for path, loaded in ((identity, read_model(identity, IdentityFile)),
                         (report, read_model(report, ReportFile))):
        assert loaded is not None or not path.exists(), "a corrupt cache file stayed in place"
    nodes = NodeListCache(_files(), clock=lambda: 0.0)
    nodes._path("https://c", "o").write_bytes(data)
    nodes.load("https://c", "o")


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
            fingerprint=str(_dtls_certificate().fingerprint), session_id=1,
            candidates=[Candidate(foundation="1", component=1, transport="udp",
                                  priority=2130706431, ip="192.0.2.1", port=5004,
                                  type="host", tcptype=None)])
        assert "a=ice-lite" in answer.sdp


@functools.cache
def _dtls_certificate() -> DtlsCertificate:
    return DtlsCertificate.generate(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))


def dtls(data: bytes) -> None:
    """wire.dtls: the node's DTLS server takes any datagrams (the input split in two) without
    raising; what it sends is whole records in datagrams of at most the MTU."""
    certificate = _dtls_certificate()
    server = DtlsSrtp(certificate, DtlsRole.SERVER, certificate.fingerprint)
    for part in (data[: len(data) // 2], data[len(data) // 2:]):
        for datagram in server.receive(part, 1.0):
            assert len(datagram) <= DATAGRAM_MTU


def webrtc_engine(data: bytes) -> None:
    """media_node.engine with a WebRTC leg latched, before its DTLS: any datagram on its
    path is answered, handed to its DTLS or dropped and counted."""
    certificate = _dtls_certificate()
    node = Engine("fuzz-node", stun_rate=0, certificate=certificate)
    answer = node.allocate(AllocateLeg(
        request_id="r1", leg_id="leg-1", meeting_id="m1", participant_id="p1", ssrc=1111,
        ice=IceCredentials(node_ufrag="nodeufrag", client_ufrag="client",
                           pwd=SecretStr(PWD.decode())),
        webrtc=WebRtcLegParams(fingerprint=str(certificate.fingerprint), ssrcs=[1111],
                               payload_types=[PayloadTypeMap(leg=96, meeting=120)],
                               slots=[SendSlot(ssrc=7, kind="video")])), 0.0)
    assert answer.ok
    sink = _Sink()
    node.on_packet(build_leg_binding("nodeufrag", "client", PWD, use_candidate=True,
                                     controlling=1), sink, ("192.0.2.1", 4000), 1.0)
    assert node.legs["leg-1"].sink is sink
    node.on_packet(data, sink, ("192.0.2.1", 4000), 1.0)
    node.tick(5.0)


TARGETS: Final[dict[str, Target]] = {
    "stun": stun,
    "framing": framing,
    "rtp": rtp,
    "srtp": srtp,
    "engine": engine,
    "control_from_node": control_from_node,
    "control_from_cloud": control_from_cloud,
    "api_body": api_body,
    "tls": tls,
    "stack_json": stack_json,
    "cache_files": cache_files,
    "sdp": sdp,
    "dtls": dtls,
    "webrtc_engine": webrtc_engine,
}
