"""The operator's console at ``/``: a live view of nodes, meetings, calls and the fallback ladder.

It requires the operator credential (``--operator-token``): a browser logs in with a form and
gets a session cookie (HttpOnly, Secure, SameSite=Strict): a random session id signed with
the token, kept by the store for ``SESSION_S`` and forgotten on logout, so a replayed cookie
is refused on every replica. A script sends ``Authorization: Bearer <token>``. Tokens and
signatures are compared in constant time; every refusal is counted
(``pinhole_operator_refusals_total``, by reason). Without it, ``/`` answers 401 with the
login form and the JSON routes 401 with a JSON error. The page is one self-contained file
(no external assets: it works offline); it loads ``/v1/console/state`` once and then
follows ``/v1/console/events``, a Server-Sent Events stream of the same snapshot, every
second. What the snapshot holds is :mod:`cloud.console_state`'s; the event history it
carries (also ``/v1/console/history``) is :mod:`cloud.history`'s.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import re
import secrets
from importlib import resources

from aiohttp import web

from cloud.console_state import snapshot
from cloud.errors import OperatorRequired, UnreadableRequest, WrongMediaType
from cloud.identity import same_secret
from cloud.state import CLOUD, Cloud

routes = web.RouteTableDef()
COOKIE = "pinhole_operator"
PUSH_EVERY_S = 1.0
MAX_TOKEN_LENGTH = 512
SESSION_S = 12 * 3600  # a console login lasts a working day of the cloud's clock
# the cookie: a random session id (32 bytes, base64url) "." its HMAC-SHA256 under the token
_COOKIE_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}\.[0-9a-f]{64}")


def _signature(token: str, session_id: str) -> str:
    """Binds a session id to the operator token: a new token ends every login."""
    return hmac.new(token.encode(), b"pinhole console session\0" + session_id.encode(),
                    hashlib.sha256).hexdigest()


def _session_key(session_id: str) -> str:
    """The store keeps a hash of the id: what it holds is no cookie."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def bearer_matches(authorization: str, token: str) -> bool:
    """Whether an ``Authorization`` value is ``Bearer <token>`` (the scheme in any case,
    RFC 7235 §2.1), compared in constant time (``hmac.compare_digest``); never raises on
    a header that was not UTF-8."""
    scheme, _, value = authorization.partition(" ")
    return scheme.lower() == "bearer" and same_secret(value.strip(), token)


def signed_session(cookie: str, token: str) -> str | None:
    """The session id of a cookie this cloud signed under ``token``, else ``None``; the
    signature is compared in constant time."""
    if not _COOKIE_SHAPE.fullmatch(cookie):
        return None
    session_id, _, signature = cookie.partition(".")
    return session_id if same_secret(signature, _signature(token, session_id)) else None


async def start_session(cloud: Cloud) -> str:
    """A new login: kept by the store (every replica sees it), its cookie returned."""
    session_id = secrets.token_urlsafe(32)
    await cloud.store.put_console_session(_session_key(session_id), cloud.clock() + SESSION_S,
                                          SESSION_S)
    return f"{session_id}.{_signature(cloud.settings.operator_token, session_id)}"


async def end_session(cloud: Cloud, cookie: str) -> None:
    """Log out: the store forgets the login, so the cookie is refused if it comes again."""
    token = cloud.settings.operator_token
    session_id = signed_session(cookie, token) if token else None
    if session_id is not None:
        await cloud.store.end_console_session(_session_key(session_id))


async def refusal(cloud: Cloud, authorization: str, cookie: str) -> str | None:
    """``None`` for the operator; else why not, as the refusal counter's reason. A bearer
    header, when present, decides alone: a wrong token is not saved by a cookie."""
    token = cloud.settings.operator_token
    if not token:
        return "closed"
    if authorization:
        return None if bearer_matches(authorization, token) else "bad_token"
    if not cookie:
        return "no_credential"
    session_id = signed_session(cookie, token)
    if session_id is None:
        return "bad_cookie"
    ends_at = await cloud.store.console_session(_session_key(session_id))
    if ends_at is None:
        return "ended_session"  # logged out (or the store let it go)
    return "expired_session" if ends_at <= cloud.clock() else None


async def check_operator(cloud: Cloud, authorization: str, cookie: str) -> bool:
    """Whether this is the operator; a refusal is counted by its reason."""
    reason = await refusal(cloud, authorization, cookie)
    if reason is not None:
        cloud.metrics.operator_refusals.labels(reason).inc()
    return reason is None


async def is_operator(request: web.Request) -> bool:
    return await check_operator(request.app[CLOUD], request.headers.get("Authorization", ""),
                                request.cookies.get(COOKIE, ""))


async def require(cloud: Cloud, authorization: str, cookie: str) -> Cloud:
    """``cloud``, for the operator; ``OperatorRequired`` (counted) for anyone else."""
    if not await check_operator(cloud, authorization, cookie):
        raise OperatorRequired("the console needs the operator credential: log in at / or "
                               "send Authorization: Bearer <operator token>")
    return cloud


async def _require(request: web.Request) -> Cloud:
    return await require(request.app[CLOUD], request.headers.get("Authorization", ""),
                         request.cookies.get(COOKIE, ""))


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
    if not await is_operator(request):
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
        raise WrongMediaType(f"{request.path} takes the console's form; scripts send "
                             "Authorization: Bearer <operator token> instead",
                             code="form_expected")


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    cloud = request.app[CLOUD]
    _form_only(request)
    try:
        form = await request.post()
    except ValueError as exc:  # a form that does not parse (a multipart with no boundary …)
        raise UnreadableRequest(f"the login form does not parse: {exc}",
                                code="bad_form") from None
    return await login_answer(cloud, form.get("token"))


async def login_answer(cloud: Cloud, given: object) -> web.Response:
    """The answer to the login form's ``token`` field: 303 to the console with a new
    login's cookie for the operator token; the form again with a 401 (counted) otherwise."""
    token = cloud.settings.operator_token
    if (token and isinstance(given, str) and len(given) <= MAX_TOKEN_LENGTH
            and same_secret(given.strip(), token)):
        response = web.Response(status=303, headers={"Location": "/"})
        response.set_cookie(COOKIE, await start_session(cloud), httponly=True, secure=True,
                            samesite="Strict", path="/", max_age=SESSION_S)
        return response
    cloud.metrics.operator_refusals.labels("bad_login").inc()
    return web.Response(status=401, content_type="text/html",
                        text=_login_page("That is not the operator token.", not token))


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    _form_only(request)
    await end_session(request.app[CLOUD], request.cookies.get(COOKIE, ""))
    response = web.Response(status=303, headers={"Location": "/"})
    response.del_cookie(COOKIE, path="/")
    return response


@routes.get("/v1/console/state")
async def state(request: web.Request) -> web.Response:
    return web.json_response(await snapshot(await _require(request)))


@routes.get("/v1/console/history")
async def history(request: web.Request) -> web.Response:
    """The event history, newest first (at most ``HISTORY_SIZE`` events)."""
    cloud = await _require(request)
    return web.json_response({"events": [e.as_dict() for e in await cloud.history.recent()]})


@routes.get("/v1/console/events")
async def events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: the snapshot now and then every second, until the page goes or
    its login ends (a logout elsewhere, or the login's time is up)."""
    authorization = request.headers.get("Authorization", "")
    cookie = request.cookies.get(COOKIE, "")
    cloud = await require(request.app[CLOUD], authorization, cookie)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
    await response.prepare(request)
    try:
        while True:
            data = json.dumps(await snapshot(cloud), separators=(",", ":"))
            await response.write(f"event: state\ndata: {data}\n\n".encode())
            await asyncio.sleep(PUSH_EVERY_S)
            if await refusal(cloud, authorization, cookie) is not None:
                break
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response
