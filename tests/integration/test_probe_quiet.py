"""A probe reports early once answers go quiet (``client.probe.probe_until_quiet``).

The defect it pins down: on a network that drops UDP silently, a cold start
waited the whole probe timeout (1 s) for the UDP probes to give up before it
could report and join, so it missed its budget of probe timeout + 3 RTT
(``bench/time_to_media.py``: 1027-1046 ms against 1030-1034). Real sockets on
loopback: a media node's own STUN responder answers, a bound socket stays
silent like a dropped port.

Timeouts are set so that no verdict rests on a margin under a second: an early report
is told by the probe still running when it comes (not by a stopwatch), and a probe
timeout is at least a second longer than an answer on loopback needs, however busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from client.probe import NOT_YET, SILENT_SHARE, ProbeTarget, probe_until_quiet
from client.proxy import ProxyConfig
from media_node.engine import Engine
from media_node.listeners import UdpListener, bind_udp
from tests.waiting import HANG_S
from wire.address import Address
from wire.transports import RungName, Transport


async def _answering(delay_s: float = 0.0) -> tuple[UdpListener, int]:
    """A media node's STUN responder; ``delay_s`` before each answer: a node that far."""
    listener = await bind_udp(Engine("quiet-test"), "127.0.0.1", 0, RungName.UDP_5004, delay_s)
    return listener, listener.port


def _target(node: str, port: int, rung: RungName = RungName.UDP_5004) -> ProbeTarget:
    return ProbeTarget(node, rung, Transport.UDP, Address("127.0.0.1", port))


async def test_a_silent_rung_is_reported_early_and_the_probe_goes_on() -> None:
    transport, port = await _answering()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    answered = _target("node-a", port)
    dropped = _target("node-a", silent.getsockname()[1], RungName.UDP_33434)
    seen: list[str] = []
    try:
        # early once quiet: 2 x the answer's time + 20 ms, before the 2.4 s probe ends
        early, running = await probe_until_quiet(
            [answered, dropped], timeout_ms=2400,
            progress=lambda done, total, o: seen.append(o.target.node_id))
        assert running is not None and not running.done()  # returned before the timeout
        assert [o.target for o in early] == [answered, dropped]  # input order
        assert early[0].rtt_ms is not None and early[0].mapped is not None
        assert early[1].rtt_ms is None and early[1].error == NOT_YET
        assert not early[1].result().reachable
        final = await running  # the probe's own end: the silent rung timed out
        assert final[1].rtt_ms is None and final[1].error != NOT_YET
        assert seen == ["node-a"]  # no progress once it has reported
    finally:
        silent.close()
        transport.close()


async def test_a_far_node_is_not_judged_by_a_near_one() -> None:
    """The defect it pins down (the lab's whitelist profile, seen failing): only the far
    node's range may use UDP, so the near node answered on TLS 443 alone, fast, and the
    probe reported once quiet by the *near* node's clock (2 x 10 ms + 20 ms), before the
    far node's first answer (90 ms away). The far node counted as unreachable and the
    call went to the near node over TLS instead of the far one over UDP. Here the near
    node answers at once on one rung and is silent on another, the far node answers
    after 90 ms: the early report must hold the far node's answer."""
    near, near_port = await _answering()
    far, far_port = await _answering(delay_s=0.09)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        early, running = await probe_until_quiet(
            [_target("node-near", near_port), _target("node-near", silent.getsockname()[1],
                                                      RungName.UDP_33434),
             _target("node-far", far_port)], timeout_ms=2400)  # far waited for 1.2 s
        assert running is not None  # reported early: the near node's closed rung
        assert early[0].rtt_ms is not None and early[1].error == NOT_YET
        assert early[2].rtt_ms is not None and early[2].rtt_ms >= 90, early[2]
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    finally:
        silent.close()
        near.close()
        far.close()


async def test_a_node_never_heard_from_holds_the_report_for_half_the_timeout() -> None:
    """A node with no answer yet may be far, not closed: it is waited for SILENT_SHARE of
    the probe timeout, not the near node's quiet time, and not the whole timeout (the
    report comes while the probe still runs)."""
    near, near_port = await _answering()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        early, running = await probe_until_quiet(
            [_target("node-near", near_port), _target("node-dead", silent.getsockname()[1])],
            timeout_ms=1000)
        waited = loop.time() - started
        assert running is not None and not running.done() and early[1].error == NOT_YET
        assert waited >= SILENT_SHARE * 1.0, waited
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    finally:
        silent.close()
        near.close()


async def test_a_probe_where_everything_answers_is_whole() -> None:
    first, port_a = await _answering()
    second, port_b = await _answering()
    try:
        outcomes, running = await probe_until_quiet(
            [_target("node-a", port_a), _target("node-b", port_b)], timeout_ms=2000)
        assert running is None
        assert all(o.rtt_ms is not None for o in outcomes)
    finally:
        first.close()
        second.close()


async def test_without_any_answer_it_waits_for_the_whole_probe() -> None:
    """Nothing answered: silence says nothing about the rungs, so no early report."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        outcomes, running = await probe_until_quiet(
            [_target("node-a", silent.getsockname()[1])], timeout_ms=300)
        assert running is None
        assert outcomes[0].rtt_ms is None and outcomes[0].error != NOT_YET
    finally:
        silent.close()


async def test_a_cancelled_caller_cancels_its_probe() -> None:
    """Nothing of a probe outlives a caller that gave up on it (its sockets included)."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    before = set(asyncio.all_tasks())
    caller = asyncio.create_task(probe_until_quiet(
        [_target("node-a", silent.getsockname()[1])], timeout_ms=5000))
    silent.setblocking(False)
    async with asyncio.timeout(HANG_S):  # the probe is under way: its request arrived
        await asyncio.get_running_loop().sock_recv(silent, 2048)
    caller.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await caller
    left = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
    assert all(t.done() for t in left), left
    silent.close()


async def test_a_probe_through_the_proxy_is_waited_for() -> None:
    """The defect it pins down: behind a hybrid node's firewall the cloud's nodes are
    reached only through the HTTP proxy, a few round trips slower than the hybrid node's
    UDP; reported early, their rungs counted as unreachable and a full hybrid node had
    nowhere to overflow (503 no_media_node). Here the proxy accepts and stays silent:
    the early report waits for its probe to end, so the probe is whole."""
    transport, port = await _answering()
    held: list[asyncio.StreamWriter] = []

    async def silent_proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    proxy = await asyncio.start_server(silent_proxy, "127.0.0.1", 0)
    proxy_port = proxy.sockets[0].getsockname()[1]
    through = ProbeTarget("cloud-node", RungName.HTTP_PROXY, Transport.HTTP_PROXY,
                          Address("127.0.0.1", 443))
    try:
        outcomes, running = await probe_until_quiet(
            [_target("hybrid", port), through], timeout_ms=1200,  # the hybrid's answer in
            proxy=ProxyConfig("127.0.0.1", proxy_port))
        assert running is None  # waited for the proxy's probe: no early report
        assert outcomes[0].rtt_ms is not None
        assert outcomes[1].rtt_ms is None and outcomes[1].error != NOT_YET
    finally:
        for writer in held:
            writer.close()
        proxy.close()
        transport.close()
