"""HTTP status only at the HTTP edge (docs/design.md, "Code conventions").

Defect: ``place()`` raised ``ApiError(503, …)`` and the background health
watch caught that HTTP error to learn that a participant could not be moved.
The core now raises :mod:`cloud.errors`' domain errors; one table in
:mod:`cloud.http` gives each its status, and only the edge's modules speak HTTP.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from cloud import errors
from cloud.errors import (
    BodyTooLarge,
    CloudError,
    Conflict,
    Forbidden,
    NoCandidate,
    StoreUnavailable,
    UnreadableRequest,
    WrongMediaType,
)
from cloud.http import STATUS, errors_middleware, status_of

CLOUD = Path(__file__).resolve().parents[2] / "cloud"
# The modules that serve HTTP: the plumbing, the application (and the package's face,
# which exports it), the route modules, the HTTP API's description and the listener.
# Every other module of cloud/ is the core.
EDGE = frozenset({"http", "app", "__init__", "devices", "meetings", "nodes", "console", "join",
                  "openapi", "connections", "__main__", "content"})
RESPONSES = frozenset({"Response", "json_response", "StreamResponse"})
HTTP_CLASS = re.compile(r"HTTP[A-Z][a-z]")  # HTTPNotFound, HTTPStatus; not HTTP_PROXY

# The answers the API has always given (tests/integration/test_cloud_api.py,
# test_api_hostile.py and the OpenAPI document pin them): code -> status.
ANSWERS = {
    "invalid_body": 400, "invalid_json": 400, "invalid_utf8": 400, "too_deep": 400,
    "invalid_unicode": 400, "bad_form": 400,
    "unauthorized": 401, "operator_required": 401,
    "forbidden": 403, "content_unsupported": 403,
    "not_found": 404,
    "conflict": 409, "private_meeting_unreachable": 409, "floor_held": 409, "not_presenter": 409,
    "too_large": 413,
    "unsupported_media_type": 415, "form_expected": 415,
    "probe_required": 428,
    "too_many_websockets": 429,
    "no_media_node": 503, "node_unavailable": 503, "store_unavailable": 503,
}


def _domain_errors() -> list[type[CloudError]]:
    return [c for _, c in inspect.getmembers(errors, inspect.isclass)
            if issubclass(c, CloudError) and c.__module__ == errors.__name__]


def _raise(cls: type[CloudError], code: str | None = None) -> CloudError:
    if issubclass(cls, NoCandidate):
        return cls(None, "no media node is reachable")
    return cls("what went wrong", code=code)


# ------------------------------------------------------------------ the mapping table


@pytest.mark.parametrize("cls", _domain_errors(), ids=lambda c: c.__name__)
def test_every_domain_error_has_its_own_status(cls: type[CloudError]) -> None:
    """A new domain error is given a status in the table, not the root's 500 by default."""
    assert cls in STATUS


@pytest.mark.parametrize(("code", "status"), sorted(ANSWERS.items()))
def test_each_code_keeps_its_status(code: str, status: int) -> None:
    """The table gives every code the status the API always answered it with."""
    owners = [c for c in _domain_errors() if c.code == code]
    family = {"invalid_json": UnreadableRequest, "invalid_utf8": UnreadableRequest,
              "too_deep": UnreadableRequest, "invalid_unicode": UnreadableRequest,
              "bad_form": UnreadableRequest, "form_expected": WrongMediaType,
              "content_unsupported": Forbidden, "floor_held": Conflict,
              "not_presenter": Conflict}
    cls = owners[0] if owners else family[code]
    assert status_of(_raise(cls, code)) == status


def test_the_nearest_class_decides() -> None:
    """``BodyTooLarge`` is an ``UnreadableRequest`` (400) but answers 413; an error the
    table does not name takes its nearest base's status."""

    class Unnamed(NoCandidate):
        pass

    assert status_of(BodyTooLarge("past the bound")) == 413
    assert status_of(UnreadableRequest("not JSON", code="invalid_json")) == 400
    assert status_of(Unnamed(None, "nothing fits")) == 503
    assert status_of(CloudError("unforeseen")) == 500


async def _answer(exc: Exception) -> tuple[int, dict[str, str]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise exc

    response = await errors_middleware(make_mocked_request("POST", "/v1/x"), handler)
    assert isinstance(response, web.Response) and response.text is not None
    return response.status, json.loads(response.text)


async def test_the_edge_answers_code_and_message() -> None:
    """One error boundary: ``{"error": code, "detail": message}`` with the table's status."""
    assert await _answer(NoCandidate(None, "no media node is reachable")) == (
        503, {"error": "no_media_node", "detail": "no media node is reachable"})
    assert await _answer(UnreadableRequest("deeper than 32", code="too_deep")) == (
        400, {"error": "too_deep", "detail": "deeper than 32"})


async def test_a_store_outage_tells_the_caller_no_internals() -> None:
    """The Redis error stays in the log; the answer is the fixed sentence it always was."""
    status, body = await _answer(StoreUnavailable("the store does not answer (Error 111 "
                                                  "connecting to 10.0.0.5:6379)"))
    assert (status, body) == (503, {"error": "store_unavailable", "detail": "the cloud's store "
                                    "does not answer; try again shortly"})


# ------------------------------------------------------------------ HTTP in the core


def http_in(source: str) -> list[str]:
    """What in ``source`` speaks HTTP: the edge's modules, ``ApiError``, aiohttp's status
    exceptions and responses, ``http.HTTPStatus``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = {a.name for a in node.names}
            module = node.module
            if module.startswith("cloud.") and module.removeprefix("cloud.") in EDGE:
                found.append(f"imports {module}")
            if module == "cloud":
                found += [f"imports cloud.{n}" for n in sorted(names & EDGE)]
            if module in ("aiohttp.web", "aiohttp.web_exceptions", "aiohttp.web_response",
                          "http"):
                found += [f"imports {module}.{n}" for n in sorted(names)
                          if HTTP_CLASS.match(n) or n in RESPONSES]
        elif isinstance(node, ast.Import):
            found += [f"imports {a.name}" for a in node.names
                      if a.name.startswith("cloud.") and a.name.removeprefix("cloud.") in EDGE]
        elif isinstance(node, ast.Attribute) and (
                HTTP_CLASS.match(node.attr) or node.attr in RESPONSES):
            found.append(f"uses .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in ("ApiError", "error_response"):
            found.append(f"uses {node.id}")
    return found


CORE = sorted(p for p in CLOUD.glob("*.py") if p.stem not in EDGE)


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_the_core_speaks_no_http(path: Path) -> None:
    """No module outside the HTTP edge imports an HTTP error or status, or answers HTTP."""
    assert http_in(path.read_text()) == []


def test_the_edge_is_all_there() -> None:
    """Every edge module named exists: a renamed one cannot slip into the core unseen."""
    assert {p.stem for p in CLOUD.glob("*.py")} >= EDGE
    assert {p.stem for p in CORE} >= {"placement", "health", "registry", "store", "leg_events"}


def test_the_check_sees_http_in_the_core() -> None:
    """The check can fail: the very lines ``placement.py`` and ``health.py`` once had."""
    placement = ("from cloud.http import ApiError\n"
                 "def f():\n    raise ApiError(503, 'no_media_node', 'x')\n")
    assert http_in(placement) == ["imports cloud.http", "uses ApiError"]
    statuses = ("from aiohttp import web\nfrom http import HTTPStatus\n"
                "def g():\n    raise web.HTTPServiceUnavailable()\n")
    assert sorted(http_in(statuses)) == ["imports http.HTTPStatus", "uses .HTTPServiceUnavailable"]
    assert http_in("from aiohttp import web\nWS = web.WebSocketResponse\n"
                   "RUNG = Transport.HTTP_PROXY\n") == []
