"""Valid inputs each target starts from, so the fuzzer begins inside the grammar."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from pydantic import SecretStr

from tests.fuzz.targets import PWD
from tests.fuzz.targets.srtp import KEYS
from wire.dtls import DtlsCertificate, DtlsRole, DtlsSrtp
from wire.models import AllocateLeg, IceCredentials, SrtpParams
from wire.multiplex import encode_frame
from wire.rtp import ReceptionReport, build_rtcp_receiver_report, build_rtp
from wire.srtp import SrtpProfile, SrtpSender
from wire.stun import build_discovery_probe, build_leg_binding

_RTP = build_rtp(payload_type=0, sequence=1, timestamp=160, ssrc=1111, payload=b"\x00" * 40)
_RR = build_rtcp_receiver_report(ssrc=1111, reports=[ReceptionReport(
    ssrc=2222, fraction_lost=0, cumulative_lost=0, highest_sequence=7, jitter=1,
    last_sr=0, delay_since_last_sr=0)])
_SENDER = SrtpSender(KEYS[SrtpProfile.AES_CM_128_HMAC_SHA1_80])
_BINDING = build_leg_binding("nodeufrag", "client", PWD)
_ALLOCATE = AllocateLeg(
    request_id="r1", leg_id="leg-1", meeting_id="m1", participant_id="p1", ssrc=1,
    ice=IceCredentials(node_ufrag="nodeufrag", client_ufrag="client", pwd=SecretStr("p" * 22)),
    srtp=SrtpParams(profile="AES_CM_128_HMAC_SHA1_80", client_to_node=SecretStr("a" * 40),
                    node_to_client=SecretStr("b" * 40)))

_VECTORS = Path(__file__).resolve().parents[1] / "vectors"
_CERTIFICATE = DtlsCertificate.generate(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
#: a browser's first DTLS flight (RFC 6347 §4.2.1: ClientHello with use_srtp)
_CLIENT_HELLO = DtlsSrtp(_CERTIFICATE, DtlsRole.CLIENT, _CERTIFICATE.fingerprint).start(0.0)[0]

SEEDS: dict[str, list[bytes]] = {
    "sdp": [(_VECTORS / name).read_bytes() for name in ("chromium_offer.sdp", "aiortc_offer.sdp")],
    "dtls": [_CLIENT_HELLO, _CLIENT_HELLO + _CLIENT_HELLO[:40]],
    "webrtc_engine": [_CLIENT_HELLO, _BINDING, _SENDER.protect(_RTP)],
    "stun": [build_discovery_probe(), _BINDING],
    "framing": [encode_frame(build_discovery_probe()) + encode_frame(_RTP)],
    "rtp": [_RTP, _RR],
    "srtp": [_SENDER.protect(_RTP), _SENDER.protect_rtcp(_RR)],
    "engine": [build_discovery_probe(), _BINDING, _SENDER.protect(_RTP)],
    "control_from_node": [b'{"type": "heartbeat", "load": 0.5, "legs": 1}',
                          b'{"type": "leg_allocated", "request_id": "r", "leg_id": "l"}'],
    "control_from_cloud": [_ALLOCATE.model_dump_json(context=None).encode(),
                           b'{"type": "release_leg", "leg_id": "leg-1"}'],
    "stack_json": [json.dumps({"cloud": "https://127.0.0.1:443", "ca": "ca.pem",
                               "orgs": {"acme": {"enrollment_key": "k"}},
                               "pins": ["sha256/" + "A" * 43 + "="]}).encode()],
    "cache_files": [b'{"device_id": "dev-1"}',
                    json.dumps({"device_id": "d", "network": "n", "stored_at": 1.0,
                                "expires_at": 2.0, "report": {"results": []}}).encode(),
                    json.dumps({"stored_at": 1.0, "nodes": []}).encode()],
    "tls": [bytes.fromhex(  # the start of a TLS 1.2 ClientHello record
        "16030100a5010000a10303") + bytes(32) + bytes.fromhex("000020c02bc02f00ff0100")],
    "api_body": [json.dumps(b).encode() for b in (
        {"org": "acme", "enrollment_key": "k", "name": "d"},
        {"results": [{"node_id": "n1", "rung": "udp/5004", "reachable": True, "rtt_ms": 9.5}]},
        {"title": "t", "id": "standup"}, {"srtp_profile": "AEAD_AES_128_GCM"},
        {"meeting_id": "m", "participant_id": "p", "transport": "tls/443", "duration_s": 1,
         "packets_sent": 1, "packets_received": 1, "loss": 0.0, "jitter_ms": 0.0},
    )],
}
