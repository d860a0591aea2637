"""Placing a WebRTC endpoint, which sends no discovery probes, as a pure function on tables
(docs/design.md "WebRTC legs", **Placement**): the org's hybrid node first (seed: "If all the
meeting participants are located on the same network, media is not sent to Cisco
Collaboration Cloud"), then a node the meeting already uses, then the least loaded; no RTT
in the reason, since none was measured. And the answer's pieces the cloud builds for it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from cloud.assignment import CASCADE_COST_MS, LOAD_COST_MS, assign_webrtc
from cloud.errors import NoCandidate, UnreadableRequest
from cloud.webrtc import candidates, credentials_for, leg_params, send_streams
from tests.unit.test_assignment import node
from wire.ice_lite import local_priority
from wire.sdp import build_answer, parse_offer
from wire.transports import RungName

DTLS = {"dtls_fingerprint": "sha-256 " + ":".join(["AB"] * 32)}


def web(id: str, **kw: Any) -> Any:
    return node(id, **{**DTLS, **kw})


@pytest.mark.parametrize(("case", "nodes", "meeting", "chosen", "rule"), [
    ("least loaded", [web("a", load=0.5), web("b", load=0.1)], frozenset(), "b", "lowest-load"),
    ("the meeting's node, though busier", [web("a", load=0.5), web("b", load=0.1)],
     frozenset({"a"}), "a", "meeting-node"),
    ("the org's hybrid node first", [web("a"), web("h", kind="hybrid", org="acme", load=0.9)],
     frozenset({"a"}), "h", "hybrid-local"),
    ("another org's hybrid node is not even listed",
     [web("a"), web("h", kind="hybrid", org="globex")], frozenset(), "a", "lowest-load"),
    ("a node without a DTLS certificate cannot take it", [node("old"), web("new", load=0.9)],
     frozenset({"old"}), "new", "lowest-load"),
    ("a full meeting node: elsewhere", [web("a", load=1.0), web("b")], frozenset({"a"}), "b",
     "lowest-load"),
])
def test_placement_rules(case: str, nodes: list[Any], meeting: frozenset[str], chosen: str,
                         rule: str) -> None:
    got = assign_webrtc(org="acme", nodes=nodes, meeting_nodes=meeting)
    assert (got.node.id, got.reason.rule) == (chosen, rule), case
    assert got.plan == ()
    assert all(c.rtt_ms is None and c.rung is None for c in got.reason.candidates)


def test_the_reason_scores_cascade_and_load_only() -> None:
    got = assign_webrtc(org="acme", nodes=[web("a", load=0.2), web("b")],
                        meeting_nodes=frozenset({"b"}))
    scores = {c.node_id: c for c in got.reason.candidates}
    assert scores["a"].score == pytest.approx(CASCADE_COST_MS + 0.2 * LOAD_COST_MS)
    assert scores["b"].score == 0.0 and got.node.id == "b"


def test_no_node_fits() -> None:
    with pytest.raises(NoCandidate) as raised:
        assign_webrtc(org="acme", nodes=[node("old"), web("down", healthy=False)],
                      meeting_nodes=frozenset())
    assert "no media node can take a WebRTC endpoint now" in str(raised.value)
    assert raised.value.reason is not None
    assert {c.excluded for c in raised.value.reason.candidates} == {
        "no DTLS certificate", "unhealthy"}


def test_candidates_follow_the_ladder() -> None:
    """RFC 8445 §5.1.2.1 priorities, best rung first; TCP as a passive candidate (RFC 6544);
    TLS 443 is no ICE candidate (a browser reaches it through TURN)."""
    found = candidates(web("a"))
    assert [(c.transport, c.port, c.tcptype) for c in found] == [
        ("udp", 5004, None), ("udp", 33434, None), ("tcp", 5004, "passive")]
    assert [c.priority for c in found] == [local_priority(RungName.UDP_5004),
                                            local_priority(RungName.UDP_33434),
                                            local_priority(RungName.TCP_5004)]


def test_send_streams_never_take_the_endpoints_own_ssrcs() -> None:
    """RFC 5576 §4.1: the slots' SSRCs are new in the session, one per section that can
    receive; a sendonly section gets none."""
    offer = parse_offer((Path(__file__).parents[1] / "vectors" / "chromium_offer.sdp")
                        .read_text())
    streams = send_streams(offer, "p-1")
    own = {s for m in offer.media for s in m.ssrcs}
    assert streams and not own & {s.ssrc for s in streams.values()}
    receiving = {m.mid for m in offer.media if m.kind in ("audio", "video")
                 and m.direction in ("sendrecv", "recvonly")}
    assert set(streams) == receiving


def test_a_ufrag_the_control_channel_cannot_carry_is_refused_by_the_cloud() -> None:
    """RFC 8839 §5.4 allows ufrags of 4 to 256 ice-chars; the leg's model carries 64. Defect
    it guards: the cloud forwarded a longer one and the node refused the command, so the
    join timed out as a node fault (503) instead of a clear 400."""
    offer = parse_offer((Path(__file__).parents[1] / "vectors" / "chromium_offer.sdp")
                        .read_text())
    assert credentials_for(offer).client_ufrag == offer.ice_ufrag
    long = dataclasses.replace(offer, ice_ufrag="u" * 65)
    with pytest.raises(UnreadableRequest) as refused:
        credentials_for(long)
    assert refused.value.code == "invalid_sdp"
    assert str(refused.value) == ("the SDP offer's ice-ufrag is 65 characters; this cloud "
                                  "takes at most 64")


def _answer_to_chromium() -> tuple[Any, Any]:
    offer = parse_offer((Path(__file__).parents[1] / "vectors" / "chromium_offer.sdp")
                        .read_text())
    answer = build_answer(offer, ice_ufrag="nodeUFRG", ice_pwd="nodePassword0123456789ab",
                          fingerprint="sha-256 " + ":".join(["AB"] * 32), session_id=1,
                          candidates=candidates(web("a")),
                          send_streams=send_streams(offer, "p-1"))
    return offer, answer


def test_a_payload_type_is_mapped_once_for_all_bundled_sections() -> None:
    """Defect it guards: one entry per section and codec (a page with eight sections gave
    twelve, sixteen sections could pass the model's 32 and fail the join with a 500). A
    number means one codec across a BUNDLE group (RFC 8843): each is listed once."""
    offer, answer = _answer_to_chromium()
    params = leg_params(offer, answer)
    legs = [m.leg for m in params.payload_types]
    assert len(legs) == len(set(legs)) and legs
    assert {m.meeting for m in params.payload_types} <= {0, 111, 120}
    video = next(m for m in answer.media if m.accepted and m.kind == "video")
    audio = next(m for m in answer.media if m.accepted and m.kind == "audio")
    clash = dataclasses.replace(video, codecs=(dataclasses.replace(
        video.codecs[0], payload_type=audio.codecs[0].payload_type),))
    bad = dataclasses.replace(answer, media=tuple(clash if m is video else m
                                                  for m in answer.media))
    with pytest.raises(UnreadableRequest, match="two codecs in one BUNDLE group"):
        leg_params(offer, bad)
