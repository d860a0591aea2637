"""Meeting routes: create, join (assignment + leg allocation), leave, view; events; metrics.

What the nodes report about legs is :mod:`cloud.leg_events`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import replace
from datetime import UTC, datetime

from aiohttp import WSCloseCode, web

from cloud.assignment import Rule
from cloud.cascades import prune_cascades
from cloud.errors import (
    Conflict,
    NoCandidate,
    NodeUnavailable,
    NotFound,
    PrivateMeetingUnreachable,
    ProbeRequired,
    TooManyStreams,
)
from cloud.http import device_auth, json_response, read_body, signed_claims
from cloud.identity import current, find_meeting
from cloud.placement import place
from cloud.sharing import after_leaving
from cloud.state import CLOUD, Cloud
from cloud.store import MeetingRecord, ParticipantRecord, without_participant
from cloud.webrtc import offer_from, place_webrtc
from wire.models import (
    CallMetrics,
    Event,
    JoinRequest,
    MeetingCreate,
    MeetingCreated,
    MeetingView,
    ParticipantView,
    ReassignRequest,
    WebRtcJoined,
    WebRtcOffer,
)
from wire.srtp import SrtpProfile
from wire.transports import DeviceProfile

CLEANUP_TIMEOUT_S = 2.0  # how long an ended events WebSocket waits for its subscription

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def _view(meeting: MeetingRecord) -> MeetingView:
    return MeetingView.model_validate(
        {
            "id": meeting.id,
            "org": meeting.org,
            "title": meeting.title,
            "participants": [
                ParticipantView.model_validate(
                    {"id": p.id, "device_id": p.device_id, "node_id": p.node_id,
                     "ssrc": p.ssrc, "transport": p.rung, "content_transport": p.content_rung}
                )
                for p in meeting.participants
            ],
            "cascades": [{"from_node": c.from_node, "to_node": c.to_node,
                          "content": c.content} for c in meeting.cascades],
            "presenter": meeting.floor.presenter if meeting.floor is not None else None,
        }
    )


@routes.post("/v1/meetings")
async def create(request: web.Request) -> web.Response:
    cloud, claims = await device_auth(request)
    body = await read_body(request, MeetingCreate, empty_ok=True)
    if body.id is None:
        meeting = MeetingRecord("mtg-" + secrets.token_hex(6), claims.org, body.title,
                                cloud.clock(), private=body.private)
        await cloud.store.put_meeting(meeting)
        return json_response(_created(meeting), status=201)
    async with cloud.store.meeting_lock(body.id):  # two devices creating "standup" get one meeting
        existing = await cloud.store.get_meeting(body.id)
        if existing is not None:
            if existing.org != claims.org:
                raise Conflict(f"meeting id {body.id} is taken; choose another id")
            return json_response(_created(existing), status=200)
        meeting = MeetingRecord(body.id, claims.org, body.title, cloud.clock(),
                                private=body.private)
        await cloud.store.put_meeting(meeting)
    return json_response(_created(meeting), status=201)


def _created(meeting: MeetingRecord) -> MeetingCreated:
    return MeetingCreated(id=meeting.id, org=meeting.org, title=meeting.title,
                          created_at=datetime.fromtimestamp(meeting.created_at, UTC),
                          private=meeting.private)


@routes.get("/v1/meetings/{meeting_id}")
async def view(request: web.Request) -> web.Response:
    cloud, claims = await device_auth(request)
    meeting = await find_meeting(cloud.store, claims, request.match_info["meeting_id"])
    return json_response(_view(meeting))


async def _seated(cloud: Cloud, meeting: MeetingRecord, participant: ParticipantRecord) -> None:
    """A placed participant: the meeting stored, its leg known, the others told (on Redis
    the event goes with the write, when the meeting's lock is released)."""
    await cloud.store.put_meeting(meeting)
    cloud.legs[participant.leg_id] = (meeting.id, participant.id)
    await cloud.store.publish(
        (p.device_id for p in meeting.participants if p.id != participant.id),
        Event(type="participant.joined", meeting_id=meeting.id,
              participant_id=participant.id, node_id=participant.node_id),
    )


@routes.post("/v1/meetings/{meeting_id}/participants")
async def join(request: web.Request) -> web.Response:
    started = time.perf_counter()
    cloud, claims = signed_claims(request)
    body = await read_body(request, JoinRequest, empty_ok=True)
    meeting_id = request.match_info["meeting_id"]
    # The lock comes with everything placement reads (on Redis in the lock's own round
    # trip): the device's record (a revoked token is a 401), the meeting (unknown: 404),
    # the device's report (none: 428), in that order.
    async with cloud.store.meeting_lock(meeting_id, claims.device_id):
        device = await current(cloud.store, claims)
        meeting = await find_meeting(cloud.store, claims, meeting_id, joining=True)
        stored = await cloud.store.get_reachability(claims.device_id)
        if stored is None:
            raise ProbeRequired(
                "no fresh reachability report for this device; probe the node list and "
                "PUT /v1/devices/{id}/reachability, then join again")
        try:
            meeting, participant, joined = await place(
                cloud, meeting, org=claims.org, device_id=claims.device_id,
                profile=DeviceProfile(claims.profile), results=stored.report.results,
                srtp_profile=SrtpProfile(body.srtp_profile),
            )
        except (NoCandidate, NodeUnavailable) as exc:
            cloud.history.note("refused", f"{device.name} could not join: {exc}",
                               meeting=meeting_id, device=device.name)
            raise
        await _seated(cloud, meeting, participant)
    cloud.metrics.joined(joined.plan[0].rung if joined.plan else "none",
                         time.perf_counter() - started)
    cloud.history.note(
        "joined", f"{device.name} joined on {participant.node_id} ({joined.reason.rule})",
        meeting=meeting_id, participant=participant.id, device=device.name,
        node=participant.node_id)
    return json_response(joined, status=201)


@routes.post("/v1/meetings/{meeting_id}/webrtc")
async def join_webrtc(request: web.Request) -> web.Response:
    started = time.perf_counter()
    cloud, claims = signed_claims(request)
    body = await read_body(request, WebRtcOffer)
    offer = offer_from(body.sdp)
    meeting_id = request.match_info["meeting_id"]
    async with cloud.store.meeting_lock(meeting_id, claims.device_id):
        device = await current(cloud.store, claims)
        meeting = await find_meeting(cloud.store, claims, meeting_id, joining=True)
        try:
            meeting, participant, chosen, answer = await place_webrtc(
                cloud, meeting, org=claims.org, device_id=claims.device_id, offer=offer)
        except (NoCandidate, NodeUnavailable) as exc:
            if isinstance(exc, PrivateMeetingUnreachable):
                cloud.metrics.placements.labels(Rule.PRIVATE_REFUSED).inc()
            cloud.history.note("refused", f"{device.name} could not join: {exc}",
                               meeting=meeting_id, device=device.name)
            raise
        await _seated(cloud, meeting, participant)
    cloud.metrics.joined("webrtc", time.perf_counter() - started)
    cloud.history.note(
        "joined", f"{device.name} joined with WebRTC on {participant.node_id} "
        f"({chosen.reason.rule})", meeting=meeting_id, participant=participant.id,
        device=device.name, node=participant.node_id)
    return json_response(WebRtcJoined(
        meeting_id=meeting_id, participant_id=participant.id, node=chosen.node,
        sdp=answer.sdp, reason=chosen.reason), status=201)


@routes.delete("/v1/meetings/{meeting_id}/participants/{participant_id}")
async def leave(request: web.Request) -> web.Response:
    cloud, claims = await device_auth(request)
    meeting_id, pid = request.match_info["meeting_id"], request.match_info["participant_id"]
    async with cloud.store.meeting_lock(meeting_id):
        meeting = await find_meeting(cloud.store, claims, meeting_id)
        found = [p for p in meeting.participants if p.id == pid]
        if not found or found[0].device_id != claims.device_id:
            raise NotFound(f"no participant {pid} of this device here")
        before = meeting
        meeting = await prune_cascades(cloud, without_participant(meeting, pid))
        if not meeting.participants:  # ended: forgotten after the meeting retention
            meeting = replace(meeting, ended_at=cloud.clock())
        await cloud.store.put_meeting(meeting)
    cloud.legs.pop(found[0].leg_id, None)
    cloud.live.pop(pid, None)
    name = await cloud.device_name(found[0].device_id)
    cloud.history.note(
        "left", f"{name} left" + ("; the meeting ended" if not meeting.participants else ""),
        meeting=meeting_id, participant=pid, device=name, node=found[0].node_id)
    await cloud.registry.release(found[0].node_id, found[0].leg_id)
    await cloud.store.publish(
        (p.device_id for p in meeting.participants),
        Event(type="participant.left", meeting_id=meeting_id, participant_id=pid),
    )
    await after_leaving(cloud, before, meeting, found[0])  # its content leg; a freed floor
    return web.Response(status=204)


@routes.post("/v1/meetings/{meeting_id}/participants/{participant_id}/reassign")
async def reassign(request: web.Request) -> web.Response:
    """The device hears nothing on its leg (no media, no consent answer): move it now.

    The cloud may not have noticed yet (a hung node, a broken path): the device
    asks, the participant is placed again away from ``node_id`` (same id and
    SSRC, a new leg), and gets the assignment here and as ``media.reassigned``.
    """
    cloud, claims = await device_auth(request)
    body = await read_body(request, ReassignRequest)
    meeting_id, pid = request.match_info["meeting_id"], request.match_info["participant_id"]
    stored = await cloud.store.get_reachability(claims.device_id)
    if stored is None:
        raise ProbeRequired("no fresh reachability report for this device; "
                            "probe and PUT /v1/devices/{id}/reachability, then ask again")
    async with cloud.store.meeting_lock(meeting_id):
        meeting = await find_meeting(cloud.store, claims, meeting_id)
        found = [p for p in meeting.participants if p.id == pid]
        if not found or found[0].device_id != claims.device_id:
            raise NotFound(f"no participant {pid} of this device here")
        if found[0].node_id != body.node_id:
            raise Conflict(f"participant {pid} is on node {found[0].node_id} "
                           f"now, not {body.node_id}; its media.reassigned event carries it")
        meeting, placed, joined = await place(
            cloud, meeting, org=claims.org, device_id=claims.device_id,
            profile=DeviceProfile(claims.profile), results=stored.report.results,
            srtp_profile=SrtpProfile.AES_CM_128_HMAC_SHA1_80, existing=found[0],
            exclude=frozenset({body.node_id}),
        )
        meeting = await prune_cascades(cloud, meeting)
        await cloud.store.put_meeting(meeting)
        cloud.legs.pop(found[0].leg_id, None)
        cloud.legs[placed.leg_id] = (meeting_id, placed.id)
    cloud.metrics.reassignments.inc()
    log.info("participant %s asked to leave silent node %s; now on %s", pid, body.node_id,
             placed.node_id)
    name = await cloud.device_name(claims.device_id)
    gap = cloud.registry.heartbeat_age(body.node_id)
    cloud.history.note(
        "failover", f"{name} moved from {body.node_id} to {placed.node_id}: "
        "its leg went silent, the device asked", meeting=meeting_id, participant=pid,
        device=name, node=body.node_id, to_node=placed.node_id, gap_s=gap)
    with contextlib.suppress(OSError):  # the silent node may well be gone
        await cloud.registry.release(body.node_id, found[0].leg_id)
    await cloud.store.publish([claims.device_id], Event(
        type="media.reassigned", meeting_id=meeting_id, participant_id=pid,
        node_id=placed.node_id, assignment=joined))
    return json_response(joined)


@routes.post("/v1/metrics/calls")
async def call_metrics(request: web.Request) -> web.Response:
    cloud, claims = await device_auth(request)
    metrics = await read_body(request, CallMetrics)
    if not metrics.final:  # in-call quality, for the console: only for a participant present
        meeting = await cloud.store.get_meeting(metrics.meeting_id)
        if meeting is None or not any(  # a guest's too: its own participant
                p.id == metrics.participant_id and p.device_id == claims.device_id
                for p in meeting.participants):
            raise NotFound("no such participant of this device in a meeting")
        cloud.live[metrics.participant_id] = metrics
        return web.Response(status=204)
    cloud.live.pop(metrics.participant_id, None)
    await cloud.store.add_call_metrics(claims.org, metrics)
    cloud.metrics.call_ended(metrics)
    return web.Response(status=204)


@routes.get("/v1/events")
async def events(request: web.Request) -> web.WebSocketResponse:
    cloud = request.app[CLOUD]
    token = request.query.get("token", "")
    if not token:
        _, _, token = request.headers.get("Authorization", "").partition(" ")
    claims = cloud.signer.verify(token.strip(), cloud.clock())
    await current(cloud.store, claims)
    device = claims.device_id
    if cloud.events_open[device] >= cloud.settings.max_events_per_device:
        cloud.metrics.refusals["events_per_device_cap"] += 1
        raise TooManyStreams(
            f"this device already holds {cloud.events_open[device]} event streams; "
            "close one first")
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
    cloud.events_open[device] += 1
    try:
        await ws.prepare(request)

        async def pump() -> None:
            # A subscription lost with the store is made again inside subscribe(); should
            # the events stop anyway, the WebSocket is closed, never left open and silent:
            # the device connects again and is subscribed again.
            try:
                async for event in cloud.store.subscribe(device):
                    await ws.send_str(event.model_dump_json())
            except ConnectionError:  # the device went away meanwhile
                return
            except Exception:
                log.exception("events of device %s stopped; closing its WebSocket", device)
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"events stopped")

        task = asyncio.create_task(pump())
        try:
            async for _ in ws:  # clients send nothing we act on; pings are automatic
                pass
        finally:
            # Bounded: a subscription whose cleanup stalls (a Redis connection cut mid-read)
            # must not hold the handler, and with it the server's shutdown, forever.
            task.cancel()
            await asyncio.wait({task}, timeout=CLEANUP_TIMEOUT_S)
    finally:
        cloud.events_open[device] -= 1
        if cloud.events_open[device] <= 0:
            del cloud.events_open[device]
    return ws


