"""Node routes: registration with a node secret, and the control WebSocket."""

from __future__ import annotations

import secrets

from aiohttp import web

from cloud.errors import Conflict, IdentityError, NotFound, UnreadableRequest
from cloud.http import bearer, json_response, read_body
from cloud.identity import same_secret
from cloud.state import CLOUD, Cloud
from wire.models import NodeInfo, NodeRegistered, NodeRegistration

routes = web.RouteTableDef()


def _check_secret(cloud: Cloud, secret: str, kind: str, org: str | None) -> None:
    """Cloud nodes share the cloud's node secret; a hybrid node's secret binds it to its org."""
    if kind == "cloud":
        ok = same_secret(secret, cloud.settings.node_secret)
    else:
        known = cloud.orgs.get(org or "")
        ok = known is not None and same_secret(secret, known.hybrid_node_secret)
    if not ok:
        raise IdentityError("wrong node secret for this kind of node and org")


@routes.post("/v1/nodes")
async def register_node(request: web.Request) -> web.Response:
    cloud = request.app[CLOUD]
    secret = bearer(request)
    body = await read_body(request, NodeRegistration)
    if body.kind == "hybrid" and not body.org:
        raise UnreadableRequest("org: a hybrid node must name its organisation")
    if body.kind == "cloud" and body.cluster:
        raise UnreadableRequest("cluster: only a hybrid node belongs to a cluster")
    _check_secret(cloud, secret, body.kind, body.org)
    node_id = body.id or "node-" + secrets.token_hex(5)
    existing = cloud.registry.get(node_id)
    if existing is not None and (existing.info.kind, existing.info.org) != (body.kind, body.org):
        raise Conflict(f"node id {node_id} is registered as another node")
    hybrid = body.kind == "hybrid"
    info = NodeInfo(
        id=node_id, kind=body.kind, region=body.region,
        org=body.org if hybrid else None, address=body.address,
        endpoints=body.endpoints, fingerprint=body.fingerprint, legacy_dc=body.legacy_dc,
        dtls_fingerprint=body.dtls_fingerprint,
        # a hybrid node named no cluster: a cluster of its own (one node, as before)
        cluster=(body.cluster or node_id) if hybrid else None,
        overflow_rtt_ms=body.overflow_rtt_ms if hybrid else None,
    )
    cloud.registry.register(info, body.capacity, body.plane)
    await cloud.registry.share(node_id)
    answer = NodeRegistered(
        node_id=node_id, control_path=f"/v1/nodes/{node_id}/control",
        heartbeat_s=cloud.settings.heartbeat_s,
    )
    return json_response(answer, status=201)


@routes.get("/v1/nodes/{node_id}/control")
async def control(request: web.Request) -> web.WebSocketResponse:
    cloud = request.app[CLOUD]
    node_id = request.match_info["node_id"]
    state = await cloud.registry.find(node_id)
    if state is None:
        raise NotFound(f"node {node_id} is not registered; POST /v1/nodes")
    _check_secret(cloud, bearer(request), state.info.kind, state.info.org)
    ws = web.WebSocketResponse(heartbeat=cloud.settings.heartbeat_s * 2)
    await ws.prepare(request)
    await cloud.registry.serve_control(node_id, ws)
    return ws
