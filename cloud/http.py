"""HTTP plumbing shared by the cloud's routes: JSON errors, bodies, authentication."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from cloud.store import StoreUnavailable
from wire.errors import BodyError
from wire.json_body import decode_json
from wire.models import ErrorBody

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error answer: HTTP ``status`` with ``{"error": code, "detail": detail}``."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def error_response(status: int, code: str, detail: str) -> web.Response:
    body = ErrorBody(error=code, detail=detail).model_dump_json()
    return web.Response(status=status, text=body, content_type="application/json")


def json_response(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        status=status, text=model.model_dump_json(), content_type="application/json"
    )


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON error; nothing leaks a stack trace."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.detail)
    except StoreUnavailable as exc:  # the readiness watch logs the outage, once per step
        log.debug("%s %s: %s", request.method, request.path, exc)
        return error_response(503, "store_unavailable",
                              "the cloud's store does not answer; try again shortly")
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "too_large", "request body is too large")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; see the cloud's log")


# BodyError.reason -> HTTP status; the reason is also the error code of the answer
_BODY_STATUS: dict[str, int] = {"too_large": 413}
JSON_TYPE = "application/json"


async def read_body(request: web.Request, model: type[M], *, empty_ok: bool = False) -> M:
    """The one way a route reads its body: bounded, strict JSON validated by ``model``.

    415 unless ``Content-Type`` is ``application/json`` (charset utf-8 only);
    413 past the size bound; 400 for bodies that are not UTF-8, nest too deep,
    are not JSON, hold lone surrogates or do not fit ``model``.
    """
    raw = await request.read()
    if not raw.strip() and empty_ok:
        raw = b"{}"
    elif request.content_type != JSON_TYPE or (request.charset or "utf-8").lower() != "utf-8":
        raise ApiError(415, "unsupported_media_type",
                       f"send the body as {JSON_TYPE} (UTF-8), not {request.content_type!r}")
    try:
        data = decode_json(raw, max_bytes=request.app[MAX_BODY], max_depth=request.app[MAX_DEPTH])
    except BodyError as exc:
        raise ApiError(_BODY_STATUS.get(exc.reason, 400), exc.reason, str(exc)) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(400, "invalid_body", f"{where}: {first['msg']}"[:300]) from None


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value:
        raise ApiError(401, "unauthorized", "missing 'Authorization: Bearer <token>'")
    return value.strip()


MAX_BODY: web.AppKey[int] = web.AppKey("max_body", int)
MAX_DEPTH: web.AppKey[int] = web.AppKey("max_depth", int)
