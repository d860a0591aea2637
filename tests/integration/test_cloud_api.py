"""The cloud API in-process over real HTTP: every route, its 4xx answers, auth, org isolation,
the OpenAPI document, and fuzzed bodies that never produce a 500.

Media nodes here are scripted control-channel clients speaking the real protocol
(register, open the control WebSocket, answer ``allocate_leg``); real nodes are
exercised by the loopback-stack tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from cloud.app import make_app
from cloud.identity import Org, TokenSigner
from cloud.openapi import OPERATIONS
from cloud.settings import CloudSettings
from cloud.store import MemoryStore, Store
from cloud.store_factory import open_store
from tests.integration.redis_server import redis_server

pytestmark = pytest.mark.slow

ORGS = {
    "acme": Org("acme", "acme-key", "acme-hybrid"),
    "globex": Org("globex", "globex-key", "globex-hybrid"),
}
NODE_SECRET = "node-secret"


class Api:
    def __init__(self, server: TestServer, http: aiohttp.ClientSession) -> None:
        self.server, self.http = server, http

    async def call(self, method: str, path: str, body: Any = None, token: str | None = None,
                   raw: bytes | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.http.request(method, self.server.make_url(path), data=data,
                                     headers=headers) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text) if text else None
            except json.JSONDecodeError:
                return response.status, text

    async def device(self, org: str = "acme", name: str = "d", **extra: Any) -> dict[str, Any]:
        status, body = await self.call("POST", "/v1/devices", {
            "org": org, "enrollment_key": f"{org}-key", "name": name, **extra})
        assert status == 201, body
        return dict(body)

    async def report(self, device: dict[str, Any], *nodes: str) -> None:
        results = [{"node_id": n, "rung": "udp/5004", "reachable": True, "rtt_ms": 10.0}
                   for n in nodes]
        status, body = await self.call("PUT", f"/v1/devices/{device['device_id']}/reachability",
                                       {"results": results}, device["token"])
        assert status == 200, body


async def _scripted_node(api: Api, node_id: str, *, kind: str = "cloud",
                         org: str | None = None, secret: str = NODE_SECRET,
                         capacity: int = 1000) -> asyncio.Task[None]:
    body = {"id": node_id, "kind": kind, "region": "test", "address": "192.0.2.7",
            "endpoints": [{"rung": "udp/5004", "transport": "udp", "port": 5004}],
            "capacity": capacity}
    if org:
        body["org"] = org
    status, answer = await api.call("POST", "/v1/nodes", body, secret)
    assert status == 201, answer
    ws = await api.http.ws_connect(api.server.make_url(answer["control_path"]),
                                   headers={"Authorization": f"Bearer {secret}"})
    await ws.send_str(json.dumps({"type": "heartbeat", "load": 0.0, "legs": 0}))

    async def serve() -> None:
        async for msg in ws:
            command = json.loads(msg.data)
            if command["type"] == "allocate_leg":
                await ws.send_str(json.dumps({"type": "leg_allocated",
                                              "request_id": command["request_id"],
                                              "leg_id": command["leg_id"]}))

    return asyncio.create_task(serve())


DEFAULT_PROBE_TTL_S = 600


@pytest.fixture(params=["memory", "redis"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """The same API over both store backends (Redis: a real redis-server)."""
    # Reports outlive any step of a test (a report then a join must not depend on how fast
    # the machine is: a 1 s default did); the expiry test sets a short TTL of its own
    # with @pytest.mark.probe_ttl and waits past it (later can only be later).
    marker = request.node.get_closest_marker("probe_ttl")
    ttl = int(marker.args[0]) if marker is not None else DEFAULT_PROBE_TTL_S
    cloud_settings = CloudSettings(node_secret=NODE_SECRET, probe_ttl_s=ttl, heartbeat_s=5)
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "memory":
            store: Store = MemoryStore()
        else:
            store = open_store(await stack.enter_async_context(redis_server(tmp_path)))
        server = TestServer(make_app(cloud_settings, store, ORGS, TokenSigner()))
        await server.start_server()
        async with aiohttp.ClientSession() as http:
            yield Api(server, http)
        await server.close()


# ----------------------------------------------------------------------------- OpenAPI


async def test_openapi_document_is_valid_and_lists_every_route(api: Api) -> None:
    """OpenAPI 3 at /v1/openapi.json, generated from the models."""
    status, document = await api.call("GET", "/v1/openapi.json")
    assert status == 200
    validate(document)
    app: web.Application = api.server.app
    served = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource is not None}
    documented = {(op.method, op.path) for op in OPERATIONS}
    assert served == documented


# ----------------------------------------------------------------------------- devices


async def test_registration_and_its_errors(api: Api) -> None:
    device = await api.device()
    assert device["probe_policy"]["ttl_s"] == DEFAULT_PROBE_TTL_S and device["token"]
    assert (await api.call("POST", "/v1/devices", {
        "org": "acme", "enrollment_key": "wrong", "name": "x"}))[0] == 401
    assert (await api.call("POST", "/v1/devices", {
        "org": "nobody", "enrollment_key": "acme-key", "name": "x"}))[0] == 401
    status, body = await api.call("POST", "/v1/devices", {"org": "acme"})
    assert status == 400 and body["error"] == "invalid_body"
    status, body = await api.call("POST", "/v1/devices", raw=b"{not json")
    assert status == 400 and set(body) == {"error", "detail"}
    status, _ = await api.call("POST", "/v1/devices", raw=b'{"x": "' + b"a" * 300_000 + b'"}')
    assert status == 413


async def test_reregistration_revokes_the_old_token(api: Api) -> None:
    first = await api.device(device_id="dev-fixed")
    second = await api.device(device_id="dev-fixed")
    assert (await api.call("GET", "/v1/nodes", token=first["token"]))[0] == 401
    assert (await api.call("GET", "/v1/nodes", token=second["token"]))[0] == 200
    other_org = await api.call("POST", "/v1/devices", {
        "org": "globex", "enrollment_key": "globex-key", "device_id": "dev-fixed"})
    assert other_org[0] == 409


async def test_device_routes_need_a_valid_token(api: Api) -> None:
    for method, path in (("GET", "/v1/nodes"), ("POST", "/v1/meetings"),
                         ("GET", "/v1/devices/x/reachability")):
        for token in (None, "garbage", "a.b"):
            status, body = await api.call(method, path, token=token)
            assert status == 401 and body["error"] == "unauthorized", (method, path, token)


async def test_hybrid_nodes_are_visible_to_their_own_org_only(api: Api) -> None:
    tasks = [await _scripted_node(api, "cloud-1"),
             await _scripted_node(api, "hyb-acme", kind="hybrid", org="acme",
                                  secret="acme-hybrid")]
    acme, globex = await api.device("acme"), await api.device("globex")
    _, acme_nodes = await api.call("GET", "/v1/nodes", token=acme["token"])
    _, globex_nodes = await api.call("GET", "/v1/nodes", token=globex["token"])
    assert {n["id"] for n in acme_nodes["nodes"]} == {"cloud-1", "hyb-acme"}
    assert {n["id"] for n in globex_nodes["nodes"]} == {"cloud-1"}
    # a hybrid node's secret binds it to its org
    status, _ = await api.call("POST", "/v1/nodes", {
        "kind": "hybrid", "org": "globex", "region": "r", "address": "192.0.2.9",
        "endpoints": [{"rung": "udp/5004", "transport": "udp", "port": 5004}]}, "acme-hybrid")
    assert status == 401
    for task in tasks:
        task.cancel()


@pytest.mark.probe_ttl(3)
async def test_reachability_is_private_and_expires(api: Api) -> None:
    """Stored with expiry = probe TTL; expired reports are gone; 428 on join."""
    a, b = await api.device(name="a"), await api.device(name="b")
    path = f"/v1/devices/{a['device_id']}/reachability"
    assert (await api.call("GET", path, token=a["token"]))[0] == 404
    await api.report(a, "n1")
    status, stored = await api.call("GET", path, token=a["token"])
    assert status == 200 and stored["report"]["results"][0]["node_id"] == "n1"
    assert (await api.call("GET", path, token=b["token"]))[0] == 403
    assert (await api.call("PUT", path, {"results": []}, b["token"]))[0] == 403
    _, meeting = await api.call("POST", "/v1/meetings", {}, a["token"])
    await asyncio.sleep(3.5)  # past the TTL of this cloud, 3 s
    assert (await api.call("GET", path, token=a["token"]))[0] == 404
    status, body = await api.call("POST", f"/v1/meetings/{meeting['id']}/participants", {},
                                  a["token"])
    assert status == 428 and body["error"] == "probe_required"


# ----------------------------------------------------------------------------- meetings


async def test_meeting_lifecycle_and_org_isolation(api: Api) -> None:
    node = await _scripted_node(api, "n1")
    alice, bob = await api.device(name="alice"), await api.device(name="bob")
    eve = await api.device("globex", name="eve")
    for device in (alice, bob, eve):
        await api.report(device, "n1")
    status, meeting = await api.call("POST", "/v1/meetings", {"title": "t"}, alice["token"])
    assert status == 201
    mpath = f"/v1/meetings/{meeting['id']}"
    status, joined = await api.call("POST", mpath + "/participants", {}, alice["token"])
    assert status == 201 and joined["node"]["id"] == "n1"
    assert joined["reason"]["chosen"] == "n1" and joined["plan"][0]["rung"] == "udp/5004"
    _, joined_b = await api.call("POST", mpath + "/participants", {}, bob["token"])
    assert joined_b["ssrc"] != joined["ssrc"]
    assert joined_b["srtp"]["client_to_node"] != joined["srtp"]["client_to_node"]
    _, view = await api.call("GET", mpath, token=alice["token"])
    assert len(view["participants"]) == 2
    leave = f"{mpath}/participants/{joined['participant_id']}"
    assert (await api.call("DELETE", leave, token=bob["token"]))[0] == 404  # not bob's
    assert (await api.call("DELETE", leave, token=alice["token"]))[0] == 204
    assert (await api.call("DELETE", leave, token=alice["token"]))[0] == 404
    assert (await api.call("GET", "/v1/meetings/nope", token=alice["token"]))[0] == 404
    bad = await api.call("POST", mpath + "/participants", {"srtp_profile": "ROT13"},
                         alice["token"])
    assert bad[0] == 400
    node.cancel()


async def test_a_guest_joins_by_the_meeting_id_on_the_cloud(api: Api) -> None:
    """Need: "Devices of another org joining an org's meeting are placed on the cloud by
    default, and the cascade links them." The meeting's id is its link: eve of globex
    holding it sees the meeting and joins it as a guest, on the cloud (rule ``guest``),
    cascaded from acme's node; neither her own org's hybrid node nor acme's serves her,
    and she can act only on her own participant."""
    nodes = [await _scripted_node(api, "n1"),
             await _scripted_node(api, "h1", kind="hybrid", org="acme", secret="acme-hybrid"),
             await _scripted_node(api, "g1", kind="hybrid", org="globex",
                                  secret="globex-hybrid")]
    alice, eve = await api.device(name="alice"), await api.device("globex", name="eve")
    await api.report(alice, "n1", "h1")
    await api.report(eve, "n1", "g1")  # her own org's node, nearer (rtt ties: 10 ms each)
    _, eve_nodes = await api.call("GET", "/v1/nodes", token=eve["token"])
    assert {n["id"] for n in eve_nodes["nodes"]} == {"n1", "g1"}  # acme's node: not hers
    _, meeting = await api.call("POST", "/v1/meetings", {"title": "review"}, alice["token"])
    mpath = f"/v1/meetings/{meeting['id']}"
    status, host = await api.call("POST", mpath + "/participants", {}, alice["token"])
    assert status == 201 and (host["node"]["id"], host["reason"]["rule"]) == (
        "h1", "hybrid-local")
    status, view = await api.call("GET", mpath, token=eve["token"])
    assert status == 200 and view["org"] == "acme"
    status, guest = await api.call("POST", mpath + "/participants", {}, eve["token"])
    assert status == 201, guest
    assert (guest["node"]["id"], guest["reason"]["rule"]) == ("n1", "guest")
    excluded = {c["node_id"]: c["excluded"] for c in guest["reason"]["candidates"]}
    assert "g1" not in excluded  # her own org's node: not even a candidate
    assert excluded["h1"] == "not reached on a transport this profile allows"  # not listed
    _, view = await api.call("GET", mpath, token=alice["token"])
    assert [(c["from_node"], c["to_node"]) for c in view["cascades"]] == [("h1", "n1")]
    mine, hers = (f"{mpath}/participants/{p['participant_id']}" for p in (host, guest))
    assert (await api.call("DELETE", mine, token=eve["token"]))[0] == 404  # not hers
    assert (await api.call("DELETE", hers, token=eve["token"]))[0] == 204
    for task in nodes:
        task.cancel()


async def test_a_cascade_leg_counts_against_its_nodes_capacity_at_once(api: Api) -> None:
    """Need: "A cascade leg must count against a node's capacity." Acme's node h1 takes
    two legs. Alice on it, eve (a guest) on the cloud node: h1 dials the cascade, its
    second leg, counted the moment the cloud asks for it (the scripted node never sends
    another heartbeat), so bob finds h1 full and overflows (``hybrid-overflow``). When
    eve and bob have left the cascade is closed and its leg freed: carol is on h1."""
    nodes = [await _scripted_node(api, "n1"),
             await _scripted_node(api, "h1", kind="hybrid", org="acme", secret="acme-hybrid",
                                  capacity=2)]
    acme = [await api.device(name=name) for name in ("alice", "bob", "carol")]
    eve = await api.device("globex", name="eve")
    for device in acme:
        await api.report(device, "n1", "h1")
    await api.report(eve, "n1")
    _, meeting = await api.call("POST", "/v1/meetings", {}, acme[0]["token"])
    mpath = f"/v1/meetings/{meeting['id']}"

    async def join(device: dict[str, Any]) -> tuple[str, str, str]:
        status, joined = await api.call("POST", mpath + "/participants", {}, device["token"])
        assert status == 201, joined
        return joined["node"]["id"], joined["reason"]["rule"], joined["participant_id"]

    assert (await join(acme[0]))[:2] == ("h1", "hybrid-local")
    guest = await join(eve)
    assert guest[:2] == ("n1", "guest")
    bob = await join(acme[1])
    assert bob[:2] == ("n1", "hybrid-overflow")
    for device, (_, _, pid) in ((eve, guest), (acme[1], bob)):
        assert (await api.call("DELETE", f"{mpath}/participants/{pid}",
                               token=device["token"]))[0] == 204
    _, view = await api.call("GET", mpath, token=acme[0]["token"])
    assert view["cascades"] == []
    assert (await join(acme[2]))[:2] == ("h1", "hybrid-local")
    for task in nodes:
        task.cancel()


async def test_a_private_meeting_is_not_shared_with_another_org(api: Api) -> None:
    """Need: a private meeting keeps "all media on the org's clusters"; "a participant
    who cannot reach any node of the org's clusters is refused at join with a clear
    reason and a documented status". Its id is no guest link: another org's device does
    not see it (404, as an unknown id), and its join is the documented 409 saying why."""
    nodes = [await _scripted_node(api, "n1"),
             await _scripted_node(api, "h1", kind="hybrid", org="acme", secret="acme-hybrid")]
    alice, eve = await api.device(name="alice"), await api.device("globex", name="eve")
    await api.report(alice, "n1", "h1")
    await api.report(eve, "n1")
    _, meeting = await api.call("POST", "/v1/meetings", {"private": True}, alice["token"])
    mpath = f"/v1/meetings/{meeting['id']}"
    assert (await api.call("POST", mpath + "/participants", {}, alice["token"]))[0] == 201
    status, body = await api.call("GET", mpath, token=eve["token"])
    assert (status, body["error"]) == (404, "not_found")
    status, body = await api.call("POST", mpath + "/participants", {}, eve["token"])
    assert (status, body["error"]) == (409, "private_meeting_unreachable")
    assert "of another organisation (globex)" in body["detail"]
    _, view = await api.call("GET", mpath, token=alice["token"])
    assert len(view["participants"]) == 1 and view["cascades"] == []
    for task in nodes:
        task.cancel()


async def test_a_meeting_id_chosen_in_advance_is_created_once_per_org(api: Api) -> None:
    """Two devices that agreed on "standup" meet in one meeting, whoever asks first; another
    organisation cannot take it over (409), and a bad id is a 400, not a meeting."""
    alice, bob = await api.device(name="alice"), await api.device(name="bob")
    eve = await api.device("globex", name="eve")
    status, first = await api.call("POST", "/v1/meetings", {"id": "standup", "title": "daily"},
                                   alice["token"])
    assert status == 201 and first["id"] == "standup" and first["title"] == "daily"
    status, again = await api.call("POST", "/v1/meetings", {"id": "standup"}, bob["token"])
    assert status == 200 and again == first
    status, body = await api.call("POST", "/v1/meetings", {"id": "standup"}, eve["token"])
    assert status == 409 and body["error"] == "conflict"
    assert (await api.call("POST", "/v1/meetings", {"id": "no spaces"}, alice["token"]))[0] == 400
    created = await asyncio.gather(*(
        api.call("POST", "/v1/meetings", {"id": "race"}, d["token"]) for d in (alice, bob)))
    assert sorted(status for status, _ in created) == [200, 201]


async def test_join_without_a_reachable_node_is_503(api: Api) -> None:
    alice = await api.device()
    await api.report(alice, "no-such-node")
    _, meeting = await api.call("POST", "/v1/meetings", {}, alice["token"])
    status, body = await api.call("POST", f"/v1/meetings/{meeting['id']}/participants", {},
                                  alice["token"])
    assert status == 503 and body["error"] == "no_media_node"


async def test_call_metrics_are_counted_by_transport(api: Api) -> None:
    """POST /v1/metrics/calls stored and counted by transport (the seed's analytics)."""
    alice = await api.device()
    metrics = {"meeting_id": "m", "participant_id": "p", "transport": "tcp/5004",
               "duration_s": 10, "packets_sent": 500, "packets_received": 498, "loss": 0.004,
               "jitter_ms": 3.1, "rtt_ms": 40}
    assert (await api.call("POST", "/v1/metrics/calls", metrics, alice["token"]))[0] == 204
    assert (await api.call("POST", "/v1/metrics/calls", {"loss": 2}, alice["token"]))[0] == 400
    _, text = await api.call("GET", "/metrics")
    assert 'pinhole_calls_total{transport="tcp/5004"} 1' in text
    assert (await api.call("GET", "/healthz"))[0] == 200
    assert (await api.call("GET", "/readyz"))[0] == 200


async def test_events_websocket_needs_a_token_and_delivers(api: Api) -> None:
    node = await _scripted_node(api, "n1")
    alice, bob = await api.device(name="alice"), await api.device(name="bob")
    for device in (alice, bob):
        await api.report(device, "n1")
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await api.http.ws_connect(api.server.make_url("/v1/events"))
    ws = await api.http.ws_connect(api.server.make_url("/v1/events"),
                                   headers={"Authorization": f"Bearer {alice['token']}"})
    _, meeting = await api.call("POST", "/v1/meetings", {}, alice["token"])
    await api.call("POST", f"/v1/meetings/{meeting['id']}/participants", {}, alice["token"])
    _, joined = await api.call("POST", f"/v1/meetings/{meeting['id']}/participants", {},
                               bob["token"])
    event = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
    assert event["type"] == "participant.joined"
    assert event["participant_id"] == joined["participant_id"]
    await ws.close()
    node.cancel()


# ----------------------------------------------------------------------------- fuzz

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(["org", "enrollment_key", "name", "profile", "results", "title",
                          "srtp_profile", "node_id", "rung", "reachable", "rtt_ms", "kind",
                          "region", "address", "endpoints", "transport", "loss"])
BODIES = st.one_of(JSON, st.dictionaries(FIELDS, JSON, max_size=6),
                   st.binary(max_size=64).map(lambda b: b.decode("latin-1")))


async def test_fuzzed_bodies_never_produce_a_500(api: Api) -> None:
    """Malformed input gets a 4xx with {"error","detail"}, never a 500."""
    alice = await api.device()
    _, meeting = await api.call("POST", "/v1/meetings", {}, alice["token"])
    targets = [(op.method.upper(), op.path.replace("{device_id}", alice["device_id"])
                .replace("{meeting_id}", meeting["id"]).replace("{participant_id}", "p-x"))
               for op in OPERATIONS if op.method in ("post", "put") and not op.websocket]
    bodies: list[Any] = []

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           *settings().suppress_health_check])
    @given(BODIES)
    def collect(body: Any) -> None:
        bodies.append(body)

    collect()
    for i, body in enumerate(bodies):
        method, path = targets[i % len(targets)]
        raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) and i % 3 == 0 \
            else json.dumps(body).encode()
        token = alice["token"] if path != "/v1/nodes" else NODE_SECRET
        status, answer = await api.call(method, path, token=token, raw=raw)
        assert status < 500, (method, path, body, answer)
        if status >= 400:
            assert isinstance(answer, dict) and set(answer) == {"error", "detail"}



async def test_a_new_or_returning_node_asks_devices_to_probe_it(api: Api) -> None:
    """A node's return "sends probe.requested to devices that have never probed it".

    Pins down a race: with the fixture's 1 s probe TTL, bob's report could expire while
    the node registered (slow on Redis), and bob was then rightly asked to probe too
    (``DID NOT RAISE TimeoutError``). The reports here outlive the test.
    """
    alice, bob = await api.device(name="alice"), await api.device(name="bob")
    await api.report(alice, "n0")  # alice never probed n2
    await api.report(bob, "n2")  # bob did
    sockets = {}
    for name, device in (("alice", alice), ("bob", bob)):
        sockets[name] = await api.http.ws_connect(
            api.server.make_url("/v1/events"),
            headers={"Authorization": f"Bearer {device['token']}"})
    node = await _scripted_node(api, "n2")
    event = json.loads((await asyncio.wait_for(sockets["alice"].receive(), 5)).data)
    assert (event["type"], event["node_id"]) == ("probe.requested", "n2")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(sockets["bob"].receive(), 1.5)
    for ws in sockets.values():
        await ws.close()
    node.cancel()
