"""Device routes: registration, node list, reachability reports, TURN credentials."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from aiohttp import web

from cloud.errors import Conflict, Forbidden, IdentityError, NotFound
from cloud.http import device_auth, json_response, read_body
from cloud.identity import Claims, same_secret
from cloud.state import CLOUD
from cloud.store import DeviceRecord
from cloud.turn import turn_credentials
from wire.models import (
    DeviceRegistered,
    DeviceRegistration,
    NodeList,
    ProbePolicy,
    ReachabilityReport,
)

routes = web.RouteTableDef()


def _own(claims: Claims, device_id: str) -> None:
    if claims.device_id != device_id:
        raise Forbidden("a device may only see its own reports")


@routes.post("/v1/devices")
async def register(request: web.Request) -> web.Response:
    cloud = request.app[CLOUD]
    body = await read_body(request, DeviceRegistration)
    org = cloud.orgs.get(body.org)
    if org is None or not same_secret(body.enrollment_key.get_secret_value(), org.enrollment_key):
        raise IdentityError("unknown organisation or wrong enrollment key")
    device_id = body.device_id or "dev-" + secrets.token_hex(6)
    previous = await cloud.store.get_device(device_id)
    if previous is not None and previous.org != org.id:
        raise Conflict(f"device id {device_id} belongs to another organisation")
    generation = previous.generation + 1 if previous is not None else 1
    await cloud.store.put_device(
        DeviceRecord(device_id, org.id, body.name, body.profile, generation)
    )
    expires = cloud.clock() + cloud.settings.token_ttl_s
    token = cloud.signer.issue(Claims(device_id, org.id, body.profile, generation, expires))
    s = cloud.settings
    answer = DeviceRegistered.model_validate(
        {
            "device_id": device_id,
            "org": org.id,
            "token": token,
            "expires_at": datetime.fromtimestamp(expires, UTC),
            "nodes": cloud.registry.visible(org.id),
            "probe_policy": ProbePolicy(
                ttl_s=s.probe_ttl_s, interval_s=s.probe_interval_s, timeout_ms=s.probe_timeout_ms
            ),
        }
    )
    return json_response(answer, status=201)


@routes.get("/v1/nodes")
async def list_nodes(request: web.Request) -> web.Response:
    cloud, claims = await device_auth(request)
    return json_response(NodeList(nodes=cloud.registry.visible(claims.org)))


@routes.put("/v1/devices/{device_id}/reachability")
async def put_reachability(request: web.Request) -> web.Response:
    cloud, claims = await device_auth(request)
    _own(claims, request.match_info["device_id"])
    report = await read_body(request, ReachabilityReport)
    stored = await cloud.store.put_reachability(
        claims.device_id, report, cloud.settings.probe_ttl_s
    )
    cloud.metrics.reports.inc()
    return json_response(stored)


@routes.get("/v1/devices/{device_id}/reachability")
async def get_reachability(request: web.Request) -> web.Response:
    cloud, claims = await device_auth(request)
    _own(claims, request.match_info["device_id"])
    stored = await cloud.store.get_reachability(claims.device_id)
    if stored is None:
        raise NotFound("no fresh reachability report; probe and report")
    return json_response(stored)


@routes.get("/v1/turn")
async def get_turn(request: web.Request) -> web.Response:
    """TURN servers and a short-lived credential for this device (``cloud.turn``); 404
    ``turn_unavailable`` when this cloud has none."""
    cloud, claims = await device_auth(request)
    s = cloud.settings
    servers = turn_credentials(s.turn_secret.encode(), claims.device_id, cloud.clock(),
                               s.turn_ttl_s, s.turn_url)
    response = json_response(servers)
    response.headers["Cache-Control"] = "no-store"  # a credential: no cache keeps it
    return response
