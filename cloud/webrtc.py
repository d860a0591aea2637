"""WebRTC endpoints join with an SDP offer: a node, an answer for it, the leg on it.

``POST /v1/meetings/{id}/webrtc`` (``cloud.meetings``) takes the offer of a
browser or any WebRTC stack (RFC 8829 §5.2) from a registered device; here the
cloud answers for the node
(RFC 8829 §5.3): the node is an ICE-lite agent (RFC 8445 §2.5) with its
host candidates (UDP 5004, UDP 33434, TCP 5004 passive: RFC 6544), the DTLS
server (RFC 8842 §5.1) whose certificate the node list publishes, one
BUNDLEd transport (RFC 8843) with rtcp-mux (RFC 5761). The SDP is parsed and
written by :mod:`wire.sdp`; the node is chosen by
:func:`cloud.assignment.assign_webrtc` (no discovery probes from a page).

Each section the node can send on gets one send slot (``media_node.webrtc``):
the answer signals its SSRC, and the node puts one other participant's
stream of that kind in it at a time. docs/design.md "WebRTC legs".
"""

from __future__ import annotations

import secrets
from typing import Final, Literal

from pydantic import ValidationError

from cloud.assignment import Assignment, assign_webrtc
from cloud.errors import UnreadableRequest
from cloud.placement import scope_of, seat, unique_ssrc
from cloud.state import Cloud
from cloud.store import MeetingRecord, ParticipantRecord
from wire.errors import SdpError
from wire.ice_lite import local_priority
from wire.models import (
    AllocateLeg,
    IceCredentials,
    NodeInfo,
    PayloadTypeMap,
    SendSlot,
    WebRtcLegParams,
)
from wire.payload_types import meeting_codec
from wire.sdp import Answer, Candidate, Offer, SendStream, build_answer, parse_offer
from wire.transports import RungName

__all__ = ["offer_from", "place_webrtc"]

SLOT_KINDS: Final[dict[str, Literal["audio", "video"]]] = {"audio": "audio", "video": "video"}

#: the node's rungs an ICE agent can use, and how: RFC 8445 host candidates over UDP,
#: RFC 6544 passive TCP candidates with RFC 4571 framing (the node's TCP 5004 speaks it)
ICE_RUNGS: Final[dict[RungName, Literal["udp", "tcp"]]] = {
    RungName.UDP_5004: "udp", RungName.UDP_33434: "udp", RungName.TCP_5004: "tcp"}


def offer_from(text: str) -> Offer:
    """The endpoint's SDP offer, parsed; an unreadable one is the caller's fault."""
    try:
        return parse_offer(text)
    except SdpError as exc:
        raise UnreadableRequest(f"the SDP offer: {exc}", code="invalid_sdp") from None


def credentials_for(offer: Offer) -> IceCredentials:
    """The leg's ICE credentials: the node's new, the endpoint's ufrag from its offer. A
    ufrag RFC 8839 §5.4 allows (up to 256 ice-chars) but the control channel's model does
    not (64, so a STUN USERNAME stays short) is refused here, not by the node later."""
    fresh = IceCredentials.generate()
    try:
        return IceCredentials(node_ufrag=fresh.node_ufrag, client_ufrag=offer.ice_ufrag,
                              pwd=fresh.pwd)
    except ValidationError:
        raise UnreadableRequest(f"the SDP offer's ice-ufrag is {len(offer.ice_ufrag)} "
                                "characters; this cloud takes at most 64", code="invalid_sdp"
                                ) from None


def candidates(node: NodeInfo) -> list[Candidate]:
    """The node's ICE candidates, best rung first (RFC 8839 §5.1)."""
    found: list[Candidate] = []
    for endpoint in node.endpoints:
        transport = ICE_RUNGS.get(endpoint.rung)
        if transport is None:
            continue
        found.append(Candidate(
            foundation=str(len(found) + 1), component=1, transport=transport,
            priority=local_priority(endpoint.rung), ip=node.address, port=endpoint.port,
            type="host", tcptype="passive" if transport == "tcp" else None))
    return sorted(found, key=lambda c: -c.priority)


def send_streams(offer: Offer, participant_id: str) -> dict[str, SendStream]:
    """One send slot per audio or video section the endpoint may receive on."""
    streams: dict[str, SendStream] = {}
    taken = {ssrc for media in offer.media for ssrc in media.ssrcs}  # never the endpoint's
    for media in offer.media:
        if media.kind in ("audio", "video") and media.direction in ("sendrecv", "recvonly"):
            ssrc = 0
            while ssrc == 0 or ssrc in taken:
                ssrc = secrets.randbits(32)
            taken.add(ssrc)
            streams[media.mid] = SendStream(ssrc=ssrc, cname=f"pinhole-{participant_id}",
                                            msid=f"pinhole-{media.mid} {media.kind}-{media.mid}")
    return streams


def leg_params(offer: Offer, answer: Answer) -> WebRtcLegParams:
    """What the node needs of the offer and answer to serve the leg. A payload type means
    one codec in all BUNDLEd sections (RFC 8843 asks the offerer for that): its
    mapping is listed once, and an offer that gives one number two codecs is refused."""
    mapped: dict[int, int] = {}
    ssrcs: list[int] = []
    slots: list[SendSlot] = []
    for media in answer.media:
        if not media.accepted:
            continue
        for codec in media.codecs:
            known = meeting_codec(codec.name, codec.clock_rate, codec.channels)
            if known is None:
                continue
            if mapped.setdefault(codec.payload_type, known.payload_type) != known.payload_type:
                raise UnreadableRequest(f"the SDP offer gives payload type "
                                        f"{codec.payload_type} two codecs in one BUNDLE group",
                                        code="invalid_sdp")
        ssrcs.extend(media.receive_ssrcs)
        kind = SLOT_KINDS.get(media.kind)
        if media.send is not None and kind is not None:
            slots.append(SendSlot(ssrc=media.send.ssrc, kind=kind))
    return WebRtcLegParams(fingerprint=offer.fingerprint, ssrcs=ssrcs, slots=slots,
                           payload_types=[PayloadTypeMap(leg=leg, meeting=meeting)
                                          for leg, meeting in mapped.items()])


async def place_webrtc(
    cloud: Cloud, meeting: MeetingRecord, *, org: str, device_id: str, offer: Offer,
) -> tuple[MeetingRecord, ParticipantRecord, Assignment, Answer]:
    """Choose a node, answer the offer for it, allocate the leg there, cascade it in."""
    others = tuple(meeting.participants)
    nodes = cloud.registry.visible(meeting.org, healthy_only=False)
    chosen = assign_webrtc(org=org, nodes=nodes, scope=scope_of(cloud, meeting),
                           meeting_nodes=frozenset(p.node_id for p in others))
    assert chosen.node.dtls_fingerprint is not None  # assign_webrtc: only such nodes
    ice = credentials_for(offer)
    participant_id = "p-" + secrets.token_hex(5)
    try:
        answer = build_answer(
            offer, ice_ufrag=ice.node_ufrag, ice_pwd=ice.pwd.get_secret_value(),
            fingerprint=chosen.node.dtls_fingerprint, candidates=candidates(chosen.node),
            send_streams=send_streams(offer, participant_id), session_id=secrets.randbits(62))
    except SdpError as exc:
        raise UnreadableRequest(f"the SDP offer cannot be answered: {exc}",
                                code="invalid_sdp") from None
    params = leg_params(offer, answer)
    participant = ParticipantRecord(
        id=participant_id, device_id=device_id, node_id=chosen.node.id,
        ssrc=params.ssrcs[0] if params.ssrcs else unique_ssrc(meeting),
        leg_id="leg-" + secrets.token_hex(6), webrtc=True,
    )
    command = AllocateLeg(
        request_id=secrets.token_hex(8), leg_id=participant.leg_id, meeting_id=meeting.id,
        participant_id=participant.id, ssrc=participant.ssrc, ice=ice, webrtc=params,
    )
    meeting = await seat(cloud, meeting, others=others, chosen=chosen, nodes=nodes,
                         participant=participant, command=command)
    return meeting, participant, chosen, answer
