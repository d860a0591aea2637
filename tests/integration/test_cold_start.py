"""A cold start probes the node list its registration brought (no ``GET /v1/nodes``).

The defect it pins down: a new device registered (the answer carries the node
list: "gets a node list at registration"), then fetched the same list again
before probing. That round trip put cold starts on blocked-UDP profiles 5-20 ms
over their budget of probe timeout + 3 RTT (``bench/time_to_media.py``).
Later probes (``probe.requested``, the hourly re-probe) still fetch a fresh list.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from client.api import CloudApi
from client.device import Device
from lab.pki import ORG
from lab.stack import NodeSpec, Stack, running_stack
from wire.models import NodeList
from wire.tls import client_context

pytestmark = pytest.mark.slow


class CountingApi(CloudApi):
    """The real client API, counting node-list fetches."""

    node_lists = 0

    async def nodes(self) -> NodeList:
        self.node_lists += 1
        return await super().nodes()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack([NodeSpec("node-a", "eu", 0)], state_dir=tmp_path) as running:
        yield running


async def test_the_first_probe_uses_the_registrations_node_list(stack: Stack) -> None:
    api = CountingApi(stack.cloud_url, client_context(stack.ca_file), pins=stack.pins)
    async with api:
        await _cold_start(api, stack)


async def _cold_start(api: CountingApi, stack: Stack) -> None:
    device = Device(api)
    registered = await device.register(ORG, stack.enrollment_key, "cold")
    outcomes = await device.discover()
    assert api.node_lists == 0
    assert {o.target.node_id for o in outcomes} == {n.id for n in registered.nodes} == {"node-a"}
    assert (await api.get_reachability()).report.results  # reported as before
    await device.discover(force=True)  # a later probe: a fresh list
    assert api.node_lists == 1
    await device.register(ORG, stack.enrollment_key, "cold", registered.device_id)
    await device.discover(force=True)  # registered again: its list again
    assert api.node_lists == 1
