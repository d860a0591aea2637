"""aiortc, a WebRTC stack nobody here wrote, takes the node's answer (``wire.sdp``) to its offer.

aiortc gathers its host candidates (UDP sockets) in ``setLocalDescription``, so this
runs on loopback as an integration test; the same offer, saved, is the unit tests'
``tests/vectors/aiortc_offer.sdp``. Proved here: ``setRemoteDescription`` accepts the
answer (ice-lite, setup passive, BUNDLE without the rejected data channel, transport
attributes at session level for the rejected section, RFC 8843 §7.3.3), and each
transceiver's ``currentDirection`` is the reverse of the direction answered by the
rules of RFC 3264 §6.1.
"""

from __future__ import annotations

import secrets

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from wire.ice_lite import new_password, new_ufrag
from wire.sdp import Candidate, SendStream, build_answer, parse_offer


async def test_aiortc_accepts_the_answer_with_the_directions_of_the_rules() -> None:
    """sendrecv with a node stream → sendrecv; sendrecv without → recvonly (aiortc:
    sendonly); recvonly with → sendonly (aiortc: recvonly); recvonly without → inactive."""
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver(AudioStreamTrack(), direction="sendrecv")
        pc.addTransceiver(VideoStreamTrack(), direction="sendrecv")
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")
        pc.createDataChannel("chat")
        await pc.setLocalDescription(await pc.createOffer())
        offer = parse_offer(pc.localDescription.sdp)
        assert [(m.mid, m.kind, m.direction) for m in offer.media] == [
            ("0", "audio", "sendrecv"), ("1", "video", "sendrecv"), ("2", "audio", "recvonly"),
            ("3", "video", "recvonly"), ("4", "application", "sendrecv")]
        answer = build_answer(
            offer, ice_ufrag=new_ufrag(), ice_pwd=new_password(),
            fingerprint="sha-256 " + ":".join(f"{b:02X}" for b in secrets.token_bytes(32)),
            candidates=[Candidate("udp", 1, "udp", 2130706431, "127.0.0.1", 5004),
                        Candidate("tcp", 1, "tcp", 2130706175, "127.0.0.1", 5004,
                                  tcptype="passive")],
            session_id=secrets.randbits(63),
            send_streams={"0": SendStream(0x0BADCAFE, "node", "node-stream node-audio"),
                          "2": SendStream(0x0DEFACED, "node", "node-stream node-audio-2")})
        assert [a.accepted for a in answer.media] == [True, True, True, True, False]

        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))

        assert pc.signalingState == "stable"
        assert [t.currentDirection for t in pc.getTransceivers()] == [
            "sendrecv", "sendonly", "recvonly", "inactive"]
        assert [a.direction for a in answer.media[:4]] == [
            "sendrecv", "recvonly", "sendonly", "inactive"]
    finally:
        await pc.close()
