"""The cloud keeps a reachability report for 2 hours, on the value the running cloud uses.

Seed: "The probing data cache expiry is set to 2 hours." Pins down a surviving mutant:
``probe_ttl_s`` 7200 → 720 in the cloud's settings was caught by nothing, because only
the model's default was checked. Here a real cloud process started with its defaults
tells the device the policy, stores the report with that expiry, and on Redis the key's
own TTL is read back from the store.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from client.device import Device
from lab.pki import ORG
from lab.stack import NodeSpec, running_stack
from tests.integration.redis_server import redis_server

pytestmark = pytest.mark.slow

TWO_HOURS_S = 2 * 60 * 60


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_a_report_is_kept_two_hours(tmp_path: Path, store: str) -> None:
    async with contextlib.AsyncExitStack() as stack_ctx:
        cloud_args: list[str] = []
        redis_url = ""
        if store == "redis":
            redis_url = await stack_ctx.enter_async_context(redis_server(tmp_path))
            cloud_args = ["--store", redis_url]
        stack = await stack_ctx.enter_async_context(running_stack(
            [NodeSpec("node-a", "eu", 0)], state_dir=tmp_path / "stack", cloud_args=cloud_args))
        device = Device(stack.api())
        stack_ctx.push_async_callback(device.api.close)
        registration = await device.register(ORG, stack.enrollment_key, "alice")
        assert registration.probe_policy.ttl_s == TWO_HOURS_S
        await device.discover()
        stored = await device.api.get_reachability()
        assert (stored.expires_at - stored.stored_at).total_seconds() == TWO_HOURS_S
        if store == "redis":
            client = aioredis.from_url(redis_url)
            try:
                key = f"pinhole:reach:{registration.device_id}"
                ttl_ms = int(await client.pttl(key))
            finally:
                await client.aclose()
            assert TWO_HOURS_S * 1000 - 60_000 < ttl_ms <= TWO_HOURS_S * 1000
