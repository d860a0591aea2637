"""The cloud application: routes, ops endpoints and the operator's console."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import prometheus_client
from aiohttp import web

from cloud import console, content, devices, health, join, meetings, nodes, openapi, retention
from cloud.history import open_history
from cloud.http import MAX_BODY, MAX_DEPTH, count_middleware, errors_middleware
from cloud.identity import Org, TokenSigner
from cloud.leg_events import LegEventQueue, follow
from cloud.metrics import CloudMetrics
from cloud.node_bus import bus_key
from cloud.readiness import StoreWatch
from cloud.registry import NodeRegistry
from cloud.settings import CloudSettings
from cloud.state import CLOUD, Cloud
from cloud.store import Store
from edge.admission import Admission

ops = web.RouteTableDef()


@ops.get("/v1/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


@ops.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@ops.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    cloud = request.app[CLOUD]
    ok = await request.app[READINESS].ping()
    body: dict[str, object] = {"ok": ok, "store": cloud.settings.store}
    if not ok:
        body["detail"] = "the store does not answer; the cloud cannot serve until it does"
    return web.json_response(body, status=200 if ok else 503)


@ops.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    cloud = request.app[CLOUD]
    all_nodes = cloud.registry.nodes()
    meetings_ = await cloud.store.list_meetings()
    m = cloud.metrics
    m.devices.set(await cloud.store.count_devices())
    m.meetings.set(len(meetings_))
    m.participants.set(sum(len(x.participants) for x in meetings_))
    m.fresh_reports.set(await cloud.store.count_reports())
    m.connections.set(cloud.connections.open)
    m.events_websockets.set(sum(cloud.events_open.values()))
    # control integrity: pub/sub commands ignored for a bad HMAC; commands nodes refused
    m.bus_forged_messages.set(cloud.registry.bus.forged if cloud.registry.bus else 0)
    m.node_refused_commands.set(cloud.registry.refused())
    # device events across lost store subscriptions (cloud.redis_store.subscribe)
    m.event_subscriptions_lost.set(cloud.store.subscriptions_lost)
    m.events_replayed.set(cloud.store.events_replayed)
    m.event_gaps.set(cloud.store.event_gaps)
    m.nodes.labels("healthy").set(sum(n.healthy for n in all_nodes))
    m.nodes.labels("unhealthy").set(sum(not n.healthy for n in all_nodes))
    return web.Response(body=m.render(),
                        headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})


def make_app(
    settings: CloudSettings, store: Store, orgs: dict[str, Org], signer: TokenSigner
) -> web.Application:
    """The aiohttp application for ``settings`` over ``store``."""
    app = web.Application(
        middlewares=[count_middleware, errors_middleware], client_max_size=settings.max_body_bytes
    )
    leg_events = LegEventQueue()
    # several replicas share their nodes over the store (None: a store of one replica)
    registry = NodeRegistry(settings.heartbeat_s, settings.heartbeat_misses, leg_events,
                            bus=store.node_bus(bus_key(settings.node_secret)))
    metrics_ = CloudMetrics()
    admission = Admission.within(settings.limits, metrics_.refusals)
    cloud = Cloud(settings=settings, store=store, registry=registry, signer=signer, orgs=orgs,
                  metrics=metrics_, connections=admission, history=open_history(settings.store))
    app[CLOUD] = cloud
    app[OPENAPI] = openapi.document()
    app[MAX_BODY] = settings.max_body_bytes
    app[MAX_DEPTH] = settings.max_json_depth
    watch = StoreWatch(store, settings.store)
    app[READINESS] = watch
    app.add_routes(devices.routes)
    app.add_routes(meetings.routes)
    app.add_routes(content.routes)
    app.add_routes(nodes.routes)
    app.add_routes(ops)
    app.add_routes(console.routes)
    app.add_routes(join.routes)

    async def shutdown(app: web.Application) -> None:
        await cloud.registry.close()  # node WebSockets end, so their handlers can finish

    app.on_shutdown.append(shutdown)

    async def health_watch(app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(health.watch(cloud)),
                 asyncio.create_task(registry.run_sync()),
                 asyncio.create_task(follow(cloud, leg_events)),
                 asyncio.create_task(retention.sweep(cloud)),
                 asyncio.create_task(watch.run()),
                 asyncio.create_task(cloud.history.run())]
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # The store closes last: the watch and the sync used it until just now (closing it
        # on shutdown, before them, printed Redis tracebacks from the still-running tasks).
        await cloud.history.close()
        await store.close()

    app.cleanup_ctx.append(health_watch)
    return app


OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi", dict)
READINESS: web.AppKey[StoreWatch] = web.AppKey("readiness", StoreWatch)
