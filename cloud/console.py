"""The operator's console at ``/``: a live view of nodes, meetings, calls and the fallback ladder.

It requires the operator credential (``--operator-token``): a browser logs in with a form and
gets a session cookie (HttpOnly, Secure, SameSite=Strict) derived from the token, a script
sends ``Authorization: Bearer <token>``. Without it, ``/`` answers 401 with the login form and
the JSON routes 401 with a JSON error. The page is one self-contained file (no external
assets: it works offline); it loads ``/v1/console/state`` once and then follows
``/v1/console/events``, a Server-Sent Events stream of the same snapshot, every second.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
from importlib import resources
from typing import Any

from aiohttp import web

from cloud.http import ApiError
from cloud.state import CLOUD, Cloud
from wire.transports import LADDER

routes = web.RouteTableDef()
COOKIE = "pinhole_operator"
PUSH_EVERY_S = 1.0
MAX_TOKEN_LENGTH = 512


def _session(token: str) -> str:
    """The cookie's value: derived from the token, so the token itself never sits in it."""
    return hmac.new(token.encode(), b"pinhole console session", hashlib.sha256).hexdigest()


def is_operator(request: web.Request) -> bool:
    token = request.app[CLOUD].settings.operator_token
    if not token:
        return False
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and hmac.compare_digest(
            header[7:].strip().encode(), token.encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), _session(token).encode())


def _require(request: web.Request) -> Cloud:
    cloud = request.app[CLOUD]
    if not is_operator(request):
        raise ApiError(401, "operator_required",
                       "the console needs the operator credential: log in at / or send "
                       "Authorization: Bearer <operator token>")
    return cloud


def _login_page(message: str, closed: bool) -> str:
    form = ("<p class=note>This cloud has no operator credential: start it with "
            "<code>--operator-token-file</code> (the lab stack prints its token).</p>"
            if closed else
            "<form method=post action=/login><label>Operator token "
            "<input name=token type=password autocomplete=current-password autofocus "
            "required></label> <button>Log in</button></form>")
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        "<title>Pinhole console: log in</title><style>"
        "body{font:15px system-ui,sans-serif;background:#0f172a;color:#e2e8f0;display:grid;"
        "place-items:center;height:100vh;margin:0}main{background:#1e293b;padding:2em 2.5em;"
        "border-radius:12px;box-shadow:0 10px 30px #0008}h1{font-size:1.3em;margin-top:0}"
        "input{font:inherit;padding:.4em;border-radius:6px;border:1px solid #475569;"
        "background:#0f172a;color:inherit}button{font:inherit;padding:.4em 1em;"
        "border-radius:6px;border:0;background:#38bdf8;color:#0f172a;cursor:pointer}"
        ".error{color:#fca5a5}.note{color:#94a3b8}</style><main>"
        "<h1>Pinhole operator console</h1>"
        + (f"<p class=error role=alert>{html.escape(message)}</p>" if message else "")
        + form + "</main></html>"
    )


@routes.get("/")
async def console(request: web.Request) -> web.Response:
    if not is_operator(request):
        closed = not request.app[CLOUD].settings.operator_token
        return web.Response(status=401, text=_login_page("", closed), content_type="text/html",
                            headers={"Cache-Control": "no-store"})
    page = resources.files("cloud").joinpath("console.html").read_text()
    return web.Response(text=page, content_type="text/html",
                        headers={"Cache-Control": "no-store",
                                 "Content-Security-Policy":
                                 "default-src 'self'; style-src 'unsafe-inline'; "
                                 "script-src 'unsafe-inline'; connect-src 'self'"})


def _form_only(request: web.Request) -> None:
    """The login and logout forms are for browsers; anything else gets a JSON error."""
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise ApiError(415, "form_expected",
                       f"{request.path} takes the console's form; scripts send "
                       "Authorization: Bearer <operator token> instead")


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    token = request.app[CLOUD].settings.operator_token
    _form_only(request)
    try:
        form = await request.post()
    except ValueError as exc:  # a form that does not parse (a multipart with no boundary …)
        raise ApiError(400, "bad_form", f"the login form does not parse: {exc}") from None
    given = form.get("token")
    if (token and isinstance(given, str) and len(given) <= MAX_TOKEN_LENGTH
            and hmac.compare_digest(given.strip().encode(), token.encode())):
        response = web.Response(status=303, headers={"Location": "/"})
        response.set_cookie(COOKIE, _session(token), httponly=True, secure=True,
                            samesite="Strict", path="/")
        return response
    return web.Response(status=401, content_type="text/html",
                        text=_login_page("That is not the operator token.", not token))


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    _form_only(request)
    response = web.Response(status=303, headers={"Location": "/"})
    response.del_cookie(COOKIE, path="/")
    return response


@routes.get("/v1/console/state")
async def state(request: web.Request) -> web.Response:
    return web.json_response(await snapshot(_require(request)))


@routes.get("/v1/console/events")
async def events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: the snapshot now and then every second, until the page goes."""
    cloud = _require(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
    await response.prepare(request)
    try:
        while True:
            data = json.dumps(await snapshot(cloud), separators=(",", ":"))
            await response.write(f"event: state\ndata: {data}\n\n".encode())
            await asyncio.sleep(PUSH_EVERY_S)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


async def snapshot(cloud: Cloud) -> dict[str, Any]:
    """Everything the console shows, as JSON-ready data."""
    registry = cloud.registry
    leg_stats: dict[str, dict[str, int]] = {}
    nodes = []
    for info in sorted(registry.nodes(), key=lambda n: (n.kind, n.region, n.id)):
        state = registry.get(info.id)
        drops: dict[str, int] = {}
        packets = [0, 0]
        if state is not None:
            for leg_id, counters in state.stats.items():
                leg_stats[leg_id] = {"packets_in": counters.packets_in,
                                     "packets_out": counters.packets_out,
                                     "drops": sum(counters.drops.values())}
                packets[0] += counters.packets_in
                packets[1] += counters.packets_out
                for reason, n in counters.drops.items():
                    drops[reason] = drops.get(reason, 0) + n
        control = ("another replica" if state is None else
                   "connected" if state.ws is not None and not state.ws.closed else "down")
        age = registry.heartbeat_age(info.id)
        legs = state.legs if state is not None else None
        capacity = state.capacity if state is not None else None
        nodes.append({
            "id": info.id, "kind": info.kind, "region": info.region, "org": info.org,
            "address": info.address, "endpoints": [f"{e.rung}:{e.port}" for e in info.endpoints],
            "healthy": info.healthy, "control": control, "heartbeat_age_s": _round(age, 1),
            "legs": legs, "capacity": capacity,
            "load": _round(legs / capacity, 4) if legs is not None and capacity else None,
            "drops": dict(sorted(drops.items())), "packets_in": packets[0],
            "packets_out": packets[1],
        })
    meetings = []
    ended = 0
    live_rungs: dict[str, int] = {}
    names: dict[str, str] = {}
    for meeting in sorted(await cloud.store.list_meetings(), key=lambda m: -m.created_at):
        if not meeting.participants:
            ended += 1  # ended meetings are counted, not listed
            continue
        people = []
        for p in meeting.participants:
            if p.device_id not in names:
                device = await cloud.store.get_device(p.device_id)
                names[p.device_id] = device.name if device is not None else p.device_id
            reported = cloud.live.get(p.id)
            if p.rung:
                live_rungs[p.rung] = live_rungs.get(p.rung, 0) + 1
            people.append({
                "id": p.id, "device": names[p.device_id], "node": p.node_id, "rung": p.rung,
                "loss": _round(reported.loss, 4) if reported else None,
                "jitter_ms": _round(reported.jitter_ms) if reported else None,
                "rtt_ms": _round(reported.rtt_ms) if reported else None,
                **leg_stats.get(p.leg_id, {}),
            })
        meetings.append({"id": meeting.id, "title": meeting.title, "org": meeting.org,
                         "created_at": meeting.created_at, "participants": people,
                         "cascades": [f"{c.from_node} → {c.to_node}" for c in meeting.cascades]})
    quality = cloud.metrics.quality
    return {
        "nodes": nodes,
        "meetings": meetings,
        "ended_meetings": ended,
        "calls": {rung: q.as_dict() for rung, q in sorted(quality.items())},
        "ladder": [{"rung": r.name, "live": live_rungs.get(r.name, 0),
                    "ended": quality[r.name].calls if r.name in quality else 0}
                   for r in LADDER],
    }
