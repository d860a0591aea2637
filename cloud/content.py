"""Screen sharing: the meeting's content floor and its content legs.

Routes (docs/design.md "Content (screen sharing)"):

- ``POST /v1/meetings/{id}/floor`` a participant of this device asks to present
  (``take_over``: even while another presents; the other is told). Refused with 409
  ``floor_held`` naming the presenter.
- ``DELETE /v1/meetings/{id}/floor`` this device's presenter gives the floor back.
- ``POST /v1/meetings/{id}/participants/{pid}/content`` a content leg on the
  participant's node: its own credentials, keys and SSRC, and a plan of stream rungs
  only (``wire.transports.CONTENT_LADDER``: TCP 5004, TCP 33434, TLS 443, the proxy).

The floor's rules are :mod:`cloud.floor`'s; they run under the meeting's lock, so two
presenters racing get exactly one floor. Every change is a ``floor.*`` event to every
participant, a line in the console's history and a count in ``/metrics``. A device
whose profile cannot use TCP (rooms, boards: UDP only) is refused content with 403
``content_unsupported``, saying why.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from dataclasses import replace
from typing import Final, Literal

from aiohttp import web
from pydantic import SecretStr

from cloud import floor as rules
from cloud.cascades import open_cascades
from cloud.errors import Conflict, Forbidden, NodeUnavailable, NotFound
from cloud.floor import FloorChange, FloorDecision
from cloud.http import device_auth, json_response, read_body
from cloud.identity import Claims, find_meeting
from cloud.placement import unique_ssrc
from cloud.sharing import announce, tell_nodes
from cloud.store import MeetingRecord, ParticipantRecord
from wire.errors import ProfileRefused
from wire.models import (
    AllocateLeg,
    AssignmentReason,
    Endpoint,
    FloorRequest,
    FloorView,
    IceCredentials,
    Joined,
    SrtpParams,
)
from wire.srtp import SrtpKeys, SrtpProfile
from wire.transports import HTTP_PROXY_443, TLS_443, DeviceProfile, check_content, content_plan

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

CONTENT_RULE = "content"  # the reason's rule of a content leg: the participant's own node


def _own(meeting: MeetingRecord, claims: Claims, pid: str) -> ParticipantRecord:
    found = next((p for p in meeting.participants if p.id == pid), None)
    if found is None or found.device_id != claims.device_id:
        raise NotFound(f"no participant {pid} of this device here")
    return found


def _may_share(claims: Claims) -> DeviceProfile:
    profile = DeviceProfile(claims.profile)
    try:
        check_content(profile)
    except ProfileRefused as exc:
        raise Forbidden(str(exc), code="content_unsupported") from None
    return profile


#: what an answer says changed (a freed floor is never a request's answer)
_ANSWERED: Final[dict[FloorChange, Literal["granted", "taken_over", "released"]]] = {
    FloorChange.GRANTED: "granted", FloorChange.TAKEN_OVER: "taken_over",
    FloorChange.RELEASED: "released"}


def _view(meeting: MeetingRecord, decision: FloorDecision) -> FloorView:
    change = decision.change
    return FloorView(
        meeting_id=meeting.id,
        presenter=None if decision.floor is None else decision.floor.presenter,
        previous=decision.previous,
        change=None if change is None else _ANSWERED.get(change))


@routes.post("/v1/meetings/{meeting_id}/floor")
async def take(request: web.Request) -> web.Response:
    cloud, claims = await device_auth(request)
    body = await read_body(request, FloorRequest)
    _may_share(claims)
    meeting_id = request.match_info["meeting_id"]
    async with cloud.store.meeting_lock(meeting_id):
        meeting = await find_meeting(cloud.store, claims, meeting_id)
        _own(meeting, claims, body.participant_id)
        try:
            decision = rules.take(meeting.floor, body.participant_id,
                                  take_over=body.take_over, now=cloud.clock())
        except rules.FloorHeld as exc:
            raise Conflict(f"{exc.presenter} presents now; ask with take_over to take the "
                           "floor over (pinhole call --share --take-over)",
                           code="floor_held") from None
        if decision.change is not None:
            meeting = replace(meeting, floor=decision.floor)
            await cloud.store.put_meeting(meeting)
            await announce(cloud, meeting, decision, body.participant_id)
    return json_response(_view(meeting, decision))


@routes.delete("/v1/meetings/{meeting_id}/floor")
async def release(request: web.Request) -> web.Response:
    cloud, claims = await device_auth(request)
    meeting_id = request.match_info["meeting_id"]
    async with cloud.store.meeting_lock(meeting_id):
        meeting = await find_meeting(cloud.store, claims, meeting_id)
        presenter = meeting.floor.presenter if meeting.floor is not None else None
        ours = any(p.id == presenter and p.device_id == claims.device_id
                   for p in meeting.participants)
        if not ours:
            raise Conflict(f"this device does not present ({presenter or 'nobody'} does); "
                           "only the presenter releases the floor", code="not_presenter")
        assert presenter is not None  # ours
        decision = rules.release(meeting.floor, presenter)
        meeting = replace(meeting, floor=decision.floor)
        await cloud.store.put_meeting(meeting)
        await announce(cloud, meeting, decision, None)
    return json_response(_view(meeting, decision))


@routes.post("/v1/meetings/{meeting_id}/participants/{participant_id}/content")
async def open_content(request: web.Request) -> web.Response:
    """A content leg for the participant, on its node; a second one replaces the first."""
    cloud, claims = await device_auth(request)
    profile = _may_share(claims)
    meeting_id, pid = request.match_info["meeting_id"], request.match_info["participant_id"]
    async with cloud.store.meeting_lock(meeting_id):
        meeting = await find_meeting(cloud.store, claims, meeting_id)
        participant = _own(meeting, claims, pid)
        node = cloud.registry.info(participant.node_id)
        if node is None:
            raise NodeUnavailable(f"node {participant.node_id} is not registered now; "
                                  "try again once the meeting has moved")
        try:
            rungs = content_plan(profile, (e.rung for e in node.endpoints))
        except ProfileRefused as exc:
            raise Forbidden(str(exc), code="content_unsupported") from None
        by_rung = {e.rung: e for e in node.endpoints}
        tls = by_rung.get(TLS_443.name)
        if tls is not None:  # the proxy's tunnel ends on the node's TLS port
            by_rung[HTTP_PROXY_443.name] = Endpoint(
                rung=HTTP_PROXY_443.name, transport=HTTP_PROXY_443.transport, port=tls.port)
        plan = [by_rung[r.name] for r in rungs]
        srtp_profile = SrtpProfile.AES_CM_128_HMAC_SHA1_80
        ice = IceCredentials.generate()
        srtp = SrtpParams(
            profile=srtp_profile.value,
            client_to_node=SecretStr(SrtpKeys.generate(srtp_profile).to_b64()),
            node_to_client=SecretStr(SrtpKeys.generate(srtp_profile).to_b64()))
        leg_id, ssrc = "leg-" + secrets.token_hex(6), unique_ssrc(meeting)
        await tell_nodes(cloud, meeting, [node.id])  # the floor, before the leg
        await cloud.registry.allocate(node.id, AllocateLeg(
            request_id=secrets.token_hex(8), leg_id=leg_id, meeting_id=meeting_id,
            participant_id=pid, ssrc=ssrc, ice=ice, srtp=srtp, content=True),
            cloud.settings.allocate_timeout_s)
        old = participant.content_leg_id
        meeting = replace(meeting, participants=tuple(
            replace(p, content_leg_id=leg_id, content_rung=None) if p.id == pid else p
            for p in meeting.participants))
        cloud.legs[leg_id] = (meeting_id, pid)  # its node's leg events find it at once
        # the content crosses to the meeting's other nodes with a content leg
        meeting = await open_cascades(cloud, meeting, node.id, content=True)
        await cloud.store.put_meeting(meeting)
    if old is not None:
        cloud.legs.pop(old, None)
        with contextlib.suppress(OSError):
            await cloud.registry.release(node.id, old)
    log.info("content leg %s of %s on node %s", leg_id, pid, node.id)
    return json_response(Joined(
        meeting_id=meeting_id, participant_id=pid, node=node, plan=plan, ice=ice, srtp=srtp,
        ssrc=ssrc, reason=AssignmentReason(chosen=node.id, rule=CONTENT_RULE, candidates=[])),
        status=201)
