"""Prometheus metrics of the cloud and a node, scraped after a real two-party call.

Pins down: the cloud's series had no HELP, and there were no histograms for join
latency, time to media (as clients report it) or the relay's latency. Parsed with
prometheus_client's own parser, as a Prometheus server would read them; the series names
that dashboards and older tests use (``pinhole_calls_total``, ``pinhole_node_drops_total``)
keep working.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from lab.stack import NodeSpec, Stack, running_stack
from tests.integration.calls import UNTIL_HUNG_UP_S, Party, hang_up_all, media_between
from wire.tls import client_context

pytestmark = pytest.mark.slow


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack([NodeSpec("node-a", "eu", 0)], state_dir=tmp_path / "stack") as s:
        yield s


async def _pinhole(stack: Stack, cache: Path, *args: str) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client", "--stack", str(stack.state_dir / "stack.json"),
        "--cache-dir", str(cache), "--json", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    result: dict[str, object] = json.loads(out)
    return result


async def _scrape(url: str, ca: str | None) -> dict[str, Metric]:
    async with aiohttp.ClientSession() as http, http.get(
            url, ssl=client_context(ca) if ca else False) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    return {f.name: f for f in text_string_to_metric_families(text)}


def _count(family: Metric, **labels: str) -> float:
    return sum(s.value for s in family.samples if s.name.endswith("_count")
               and all(s.labels.get(k) == v for k, v in labels.items()))


async def test_every_series_is_described_and_the_histograms_fill(
        stack: Stack, tmp_path: Path) -> None:
    meeting = str((await _pinhole(stack, tmp_path / "c0", "meeting", "create"))["meeting_id"])
    parties = [await Party.start(stack, "--cache-dir", str(tmp_path / name), "--json",
                                 "--name", name, "call", "--meeting", meeting,
                                 "--seconds", str(UNTIL_HUNG_UP_S)) for name in ("alice", "bob")]
    await media_between(stack, meeting)  # both talked through the node, then hang up
    await hang_up_all(parties)
    cloud = await _scrape(stack.cloud_url + "/metrics", stack.ca_file)
    node = await _scrape(str(stack.nodes[0]["metrics_url"]), None)
    for name, family in [*cloud.items(), *node.items()]:
        assert family.documentation, f"{name}: no HELP"
        assert family.type in {"counter", "gauge", "histogram"}, f"{name}: TYPE {family.type}"
    assert cloud["pinhole_join_latency_seconds"].type == "histogram"
    assert _count(cloud["pinhole_join_latency_seconds"]) == 2
    assert _count(cloud["pinhole_time_to_media_seconds"], transport="udp/5004") == 2
    assert cloud["pinhole_calls"].type == "counter"  # exposed as pinhole_calls_total
    assert any(s.name == "pinhole_calls_total" and s.labels == {"transport": "udp/5004"}
               and s.value == 2 for s in cloud["pinhole_calls"].samples)
    relay = node["pinhole_node_relay_latency_seconds"]
    assert relay.type == "histogram" and _count(relay) > 0
    assert "pinhole_node_drops" in node and "pinhole_node_load" in node
