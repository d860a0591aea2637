"""HTTP plumbing shared by the cloud's routes: JSON errors, bodies, authentication.

The HTTP edge: the core raises :class:`cloud.errors.CloudError`, never a
status; :data:`STATUS` is the one table that gives each domain error its HTTP
status, and :func:`errors_middleware` the one place that applies it, keeping
the error's ``code`` and message as ``{"error": code, "detail": detail}``.

Bodies are untrusted: :func:`decode_json` bounds them before any model sees them.
Python's ``json.loads`` recurses once per nesting level, so ``[`` × 1000 or
``{"a":`` × 5000 raises ``RecursionError`` from deep inside the parser; it
also accepts ``NaN``/``Infinity`` (not JSON, RFC 8259 §6) and turns the escape
``"\\ud800"`` into a lone surrogate that no UTF-8 encoder accepts later (RFC
8259 §8.2: such strings are not interoperable). :func:`decode_json` checks all
of that *before* or *without* recursion and raises one domain error,
:class:`~wire.errors.BodyError`, whose ``reason`` :func:`read_body` maps to a status.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Final, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from cloud.errors import (
    BodyTooLarge,
    CloudError,
    Conflict,
    Forbidden,
    IdentityError,
    NoCandidate,
    NodeUnavailable,
    NotFound,
    OperatorRequired,
    PrivateMeetingUnreachable,
    ProbeRequired,
    StoreUnavailable,
    TooManyStreams,
    TurnUnavailable,
    UnreadableRequest,
    WrongMediaType,
)
from cloud.identity import Claims, current
from cloud.state import CLOUD, Cloud
from wire.errors import BodyError
from wire.models import ErrorBody

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


JSON_DEPTH: Final = 32  # the deepest body any Pinhole model has is 4 levels
_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET: Final = re.compile(r"[\[\]{}]")
_OPENERS: Final = frozenset("[{")


def nesting_depth(text: str) -> int:
    """How deep the arrays and objects of ``text`` nest, strings skipped, without recursion."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match.group() in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _check_strings(value: object) -> None:
    """Raise ``BodyError`` for a string (or key) that is not valid Unicode (lone surrogates)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise BodyError("invalid_unicode",
                                    "a string holds a lone surrogate (\\ud800-\\udfff)") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def decode_json(raw: bytes, *, max_bytes: int, max_depth: int = JSON_DEPTH) -> object:
    """The JSON value of ``raw``; :class:`BodyError` with an exact message when it is not one.

    Reasons: ``too_large`` (more than ``max_bytes``), ``invalid_utf8``,
    ``too_deep`` (more than ``max_depth`` nested arrays/objects),
    ``invalid_json``, ``invalid_unicode`` (a lone surrogate escape).
    """
    if len(raw) > max_bytes:
        raise BodyError("too_large", f"the body is larger than {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")  # strict: also refuses encoded surrogates (ED A0 80)
    except UnicodeDecodeError:
        raise BodyError("invalid_utf8", "the body is not UTF-8") from None
    if nesting_depth(text) > max_depth:
        raise BodyError("too_deep", f"the body nests deeper than {max_depth} levels")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise BodyError("invalid_json", "the body is not valid JSON") from None
    _check_strings(value)
    return value


#: The HTTP status of each domain error; a subclass not named takes its nearest base's.
STATUS: Final[Mapping[type[CloudError], int]] = MappingProxyType({
    UnreadableRequest: 400,
    IdentityError: 401,
    OperatorRequired: 401,
    Forbidden: 403,
    NotFound: 404,
    TurnUnavailable: 404,
    Conflict: 409,
    PrivateMeetingUnreachable: 409,
    BodyTooLarge: 413,
    WrongMediaType: 415,
    ProbeRequired: 428,
    TooManyStreams: 429,
    CloudError: 500,
    NoCandidate: 503,
    NodeUnavailable: 503,
    StoreUnavailable: 503,
})


def status_of(exc: CloudError) -> int:
    """The status :data:`STATUS` gives ``exc``'s class or its nearest base."""
    return next(STATUS[c] for c in type(exc).__mro__ if c in STATUS)


def error_response(status: int, code: str, detail: str) -> web.Response:
    body = ErrorBody(error=code, detail=detail).model_dump_json()
    return web.Response(status=status, text=body, content_type="application/json")


def json_response(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        status=status, text=model.model_dump_json(), content_type="application/json"
    )


@web.middleware
async def count_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer counted by its class (2xx, 4xx …), errors included: it wraps
    :func:`errors_middleware`."""
    response = await handler(request)
    request.app[CLOUD].metrics.responses.labels(f"{response.status // 100}xx").inc()
    return response


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON error; nothing leaks a stack trace."""
    try:
        return await handler(request)
    except CloudError as exc:  # a store outage is the readiness watch's to log, once a step
        log.debug("%s %s: %s", request.method, request.path, exc)
        return error_response(status_of(exc), exc.code, exc.detail)
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "too_large", "request body is too large")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; see the cloud's log")


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
        raise WrongMediaType(
            f"send the body as {JSON_TYPE} (UTF-8), not {request.content_type!r}")
    try:
        data = decode_json(raw, max_bytes=request.app[MAX_BODY], max_depth=request.app[MAX_DEPTH])
    except BodyError as exc:
        refused = BodyTooLarge if exc.reason == BodyTooLarge.code else UnreadableRequest
        raise refused(str(exc), code=exc.reason) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise UnreadableRequest(f"{where}: {first['msg']}"[:300]) from None


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value:
        raise IdentityError("missing 'Authorization: Bearer <token>'")
    return value.strip()


MAX_BODY: web.AppKey[int] = web.AppKey("max_body", int)
MAX_DEPTH: web.AppKey[int] = web.AppKey("max_depth", int)


# ----------------------------------------------------------------------------- a device


async def device_auth(request: web.Request) -> tuple[Cloud, Claims]:
    """The cloud and the caller's claims; 401 for a bad, expired or revoked token."""
    cloud, claims = signed_claims(request)
    await current(cloud.store, claims)
    return cloud, claims


def signed_claims(request: web.Request) -> tuple[Cloud, Claims]:
    """The bearer token's claims, signature and expiry checked, not yet revocation
    (:func:`cloud.identity.current`): a join checks that with its meeting's lock, which reads
    the device's record in the same round trip on Redis."""
    cloud = request.app[CLOUD]
    return cloud, cloud.signer.verify(bearer(request), cloud.clock())


