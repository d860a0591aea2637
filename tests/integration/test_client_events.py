"""The client's events WebSocket survives a cloud restart and acts on probe.requested.

"Registration and signaling over HTTPS and the events WebSocket, with
reconnect (jittered backoff) and resubscription"; "Re-probe ... on
probe.requested".
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest
from aiohttp import web

from client.api import CloudApi
from client.device import Device
from cloud.app import make_app
from cloud.identity import Org, TokenSigner
from cloud.settings import CloudSettings
from cloud.store import MemoryStore
from tests.waiting import until
from wire.models import Event

pytestmark = pytest.mark.slow
ORGS = {"acme": Org("acme", "acme-key", "acme-hybrid")}


async def _serve(store: MemoryStore, signer: TokenSigner, port: int) -> web.AppRunner:
    runner = web.AppRunner(make_app(CloudSettings(), store, ORGS, signer), shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    return runner


def _subscriptions(store: MemoryStore, device_id: str) -> set[object]:
    """The device's live event subscriptions in the store (one per events WebSocket)."""
    return set(store._subscribers.get(device_id, ()))


async def test_events_reconnect_after_a_cloud_restart_and_reprobe_on_request() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store, signer = MemoryStore(), TokenSigner("22" * 32)
    runner = await _serve(store, signer, port)
    device = Device(CloudApi(f"http://127.0.0.1:{port}", None))
    registered = await device.register("acme", "acme-key", "alice")
    received: list[Event] = []

    async def on_event(event: Event) -> None:
        received.append(event)

    follower = asyncio.create_task(device.follow_events(on_event, max_backoff_s=0.5))
    device_id = registered.device_id
    await until(lambda: bool(_subscriptions(store, device_id)), "the client subscribed")
    first = _subscriptions(store, device_id)
    await store.publish([device_id], Event(type="participant.left"))
    await until(lambda: bool(received), "the event reached the client")
    assert [e.type for e in received] == ["participant.left"]

    await runner.cleanup()  # the cloud goes away ...
    await until(lambda: device.reconnects > 0, "the client saw the cloud go")
    runner = await _serve(store, signer, port)  # ... and comes back
    await until(lambda: bool(_subscriptions(store, device_id) - first), "resubscribed")
    await store.publish([device_id], Event(type="probe.requested", node_id="n9"))
    await until(lambda: len(received) >= 2, "the second event reached the client")
    assert received[-1].type == "probe.requested"
    assert device.source == "probe"  # it re-probed by itself
    assert await store.get_reachability(registered.device_id) is not None
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower
    await device.api.close()
    await runner.cleanup()
