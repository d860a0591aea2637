"""The OpenAPI 3.1 document of the cloud API, generated from the ``wire.models`` bodies.

One table (:data:`OPERATIONS`) names each route's models; the schemas come
from pydantic, so the document cannot drift from what the routes validate. A
test checks that every route the application serves is in the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from wire.models import (
    CallMetrics,
    DeviceRegistered,
    DeviceRegistration,
    ErrorBody,
    Event,
    FloorRequest,
    FloorView,
    IceServers,
    Joined,
    JoinRequest,
    MeetingCreate,
    MeetingCreated,
    MeetingView,
    NodeList,
    NodeRegistered,
    NodeRegistration,
    ReachabilityReport,
    ReassignRequest,
    StoredReachability,
    WebRtcJoined,
    WebRtcOffer,
)


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    summary: str
    auth: str  # "device", "enrollment", "node", "operator", "none"
    request: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int = 200
    errors: tuple[int, ...] = ()
    websocket: bool = False
    also: tuple[int, ...] = ()  # other success codes with the same body


OPERATIONS: Final = (
    Operation("post", "/v1/devices", "Register a device with its organisation's enrollment key",
              "enrollment", DeviceRegistration, DeviceRegistered, 201, (400, 401, 413)),
    Operation("get", "/v1/nodes", "Node list visible to this device", "device", None, NodeList,
              errors=(401,)),
    Operation("put", "/v1/devices/{device_id}/reachability",
              "Store a probe report (kept for the probe TTL, 2 hours)", "device",
              ReachabilityReport, StoredReachability, errors=(400, 401, 403, 413)),
    Operation("get", "/v1/devices/{device_id}/reachability", "The stored report", "device",
              None, StoredReachability, errors=(401, 403, 404)),
    Operation("post", "/v1/meetings",
              "Create a meeting (with an id: create it once, then answer it with 200)",
              "device", MeetingCreate, MeetingCreated, 201, (400, 401, 409), also=(200,)),
    Operation("get", "/v1/meetings/{meeting_id}", "Participants, nodes, transports, cascades",
              "device", None, MeetingView, errors=(401, 404)),
    Operation("post", "/v1/meetings/{meeting_id}/participants",
              "Join: assignment, transport plan, ICE credentials, SRTP keys, reason; a "
              "device of another org holding the meeting's id joins as a guest (on the "
              "cloud); 409 private_meeting_unreachable: a private meeting, and no node of "
              "the org's clusters reached with room", "device",
              JoinRequest, Joined, 201, (400, 401, 404, 409, 428, 503)),
    Operation("post", "/v1/meetings/{meeting_id}/webrtc",
              "Join with a WebRTC endpoint: its SDP offer in, the node's SDP answer out "
              "(ICE-lite, DTLS-SRTP with the node as server, BUNDLE, rtcp-mux)", "device",
              WebRtcOffer, WebRtcJoined, 201, (400, 401, 404, 409, 503)),
    Operation("get", "/v1/turn", "TURN servers for a WebRTC endpoint (RFC 8656) and a "
              "credential in coturn's shared-secret scheme, good for ttl_s; 404 "
              "turn_unavailable when none is configured", "device", None, IceServers,
              errors=(401, 404)),
    Operation("delete", "/v1/meetings/{meeting_id}/participants/{participant_id}", "Leave",
              "device", None, None, 204, (401, 404)),
    Operation("post", "/v1/meetings/{meeting_id}/participants/{participant_id}/reassign",
              "The device's leg to node_id went silent: a new assignment elsewhere (also sent "
              "as media.reassigned); 409 when the participant is no longer on node_id",
              "device", ReassignRequest, Joined, 200, (400, 401, 404, 409, 503)),
    Operation("post", "/v1/meetings/{meeting_id}/floor",
              "Present: take the content floor (take_over: even from another presenter, who "
              "is told); 409 floor_held names the presenter; 403 content_unsupported for a "
              "device profile without TCP", "device", FloorRequest, FloorView, 200,
              (400, 401, 403, 404, 409, 413)),
    Operation("delete", "/v1/meetings/{meeting_id}/floor",
              "Stop presenting: the presenter gives the floor back (409 not_presenter)",
              "device", None, FloorView, 200, (401, 404, 409)),
    Operation("post", "/v1/meetings/{meeting_id}/participants/{participant_id}/content",
              "A content (screen sharing) leg on the participant's node: credentials, keys, "
              "SSRC and a plan of stream rungs only (tcp/5004, tcp/33434, tls/443, "
              "http-proxy)", "device", None, Joined, 201, (401, 403, 404, 503)),
    Operation("get", "/v1/events", "WebSocket of events for this device (text frames: Event)",
              "device", None, Event, 101, (401, 429), websocket=True),
    Operation("post", "/v1/metrics/calls", "End-of-call quality report", "device",
              CallMetrics, None, 204, (400, 401)),
    Operation("post", "/v1/nodes", "Register a media or hybrid node with its node secret",
              "node", NodeRegistration, NodeRegistered, 201, (400, 401, 409)),
    Operation("get", "/v1/nodes/{node_id}/control",
              "The node's control WebSocket (it connects out; NodeToCloud / CloudToNode)",
              "node", None, None, 101, (401, 404), websocket=True),
    Operation("get", "/v1/openapi.json", "This document", "none", None, None),
    Operation("get", "/healthz", "Liveness", "none", None, None),
    Operation("get", "/readyz", "Readiness: the store answers", "none", None, None,
              errors=(503,)),
    Operation("get", "/metrics", "Prometheus text", "none", None, None),
    Operation("get", "/", "The operator's console (HTML; without the credential: 401 and "
              "the login form)", "operator", None, None, errors=(401,)),
    Operation("get", "/join/{meeting_id}", "The browser join page (HTML): the device token "
              "rides in the URL fragment (#token=...), which is never sent, and the page joins "
              "with POST /v1/meetings/{meeting_id}/webrtc", "none", None, None),
    Operation("post", "/login", "Log in to the console with the operator token (form field "
              "token): 303 to / with a session cookie", "none", None, None, 303, (401, 415)),
    Operation("post", "/logout", "Log out of the console: 303 to /", "none", None, None, 303,
              (415,)),
    Operation("get", "/v1/console/state", "The console's snapshot: nodes, meetings, calls, "
              "the fallback ladder, the event history", "operator", None, None, errors=(401,)),
    Operation("get", "/v1/console/history", "The event history, newest first (a bounded "
              "ring, shared by the replicas)", "operator", None, None, errors=(401,)),
    Operation("get", "/v1/console/events", "Server-Sent Events (text/event-stream): the "
              "snapshot every second", "operator", None, None, errors=(401,)),
)

_SECURITY: Final = {"device": "deviceToken", "enrollment": None, "node": "nodeSecret",
                    "operator": "operatorToken"}


def _implied_errors(op: Operation) -> set[int]:
    """Answers every route of a kind may give: 413/415 with a body, 503 with the store."""
    codes: set[int] = set()
    if op.request is not None:
        codes |= {400, 413, 415}  # the one body reader (cloud.http.read_body)
    if op.auth != "none":
        codes.add(503)  # store_unavailable
    return codes


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def document(version: str = "1") -> dict[str, Any]:
    models = {m for op in OPERATIONS for m in (op.request, op.response) if m is not None}
    models.add(ErrorBody)
    _, schemas = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        entry: dict[str, Any] = {"summary": op.summary, "operationId": f"{op.method} {op.path}"}
        params = [p.strip("{}") for p in op.path.split("/") if p.startswith("{")]
        if params:
            entry["parameters"] = [{"name": p, "in": "path", "required": True,
                                    "schema": {"type": "string"}} for p in params]
        if op.request is not None:
            entry["requestBody"] = {"required": op.request is not JoinRequest
                                    and op.request is not MeetingCreate,
                                    "content": {"application/json": {"schema": _ref(op.request)}}}
        ok: dict[str, Any] = {"description": "success"}
        if op.response is not None:
            ok["content"] = {"application/json": {"schema": _ref(op.response)}}
        responses = {str(code): ok for code in (op.status, *op.also)}
        for code in sorted({*op.errors, *_implied_errors(op)}):
            responses[str(code)] = {"description": "error",
                                    "content": {"application/json": {"schema": _ref(ErrorBody)}}}
        entry["responses"] = responses
        scheme = _SECURITY.get(op.auth)
        if scheme:
            entry["security"] = [{scheme: []}]
        if op.websocket:
            entry["x-websocket"] = True
        paths.setdefault(op.path, {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Pinhole cloud API", "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "deviceToken": {"type": "http", "scheme": "bearer",
                                "description": "the token from POST /v1/devices"},
                "nodeSecret": {"type": "http", "scheme": "bearer",
                               "description": "the node secret (hybrid: the org's)"},
                "operatorToken": {"type": "http", "scheme": "bearer",
                                  "description": "the operator token (or the console's "
                                  "session cookie after POST /login)"},
            },
        },
    }
