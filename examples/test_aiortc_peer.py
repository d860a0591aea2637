"""A WebRTC client nobody at Pinhole wrote (aiortc) behind four enterprise firewalls.

The pattern for any WebRTC client: it gets only what a real deployment would hand it —
the cloud's URL and CA, a device token, the meeting's SDP offer/answer endpoint, and the
enterprise's HTTP proxy where there is one — from the environment ``pinhole_lab`` gives
(``PINHOLE_CLOUD``, ``PINHOLE_CA``, ``PINHOLE_DEVICE_TOKEN``, ``PINHOLE_WEBRTC_URL``,
``PINHOLE_PROXY``). It runs *inside* the enterprise network (``pinhole_lab.run_async``:
every socket it opens is there), fetches its TURN servers (``GET /v1/turn``), posts its
offer, applies the answer, and talks with a ``pinhole call`` in the same meeting until each
has received the other's media. The test asserts the candidate pair aiortc selected:

- ``open``: straight to the node's UDP 5004 (the node's highest-priority candidate);
- ``no-udp`` and ``tls-only``: relayed by the stack's TURN server over TLS on 443 (RFC
  8656 §3.1). A browser would take ICE-TCP to the node's TCP 5004 under ``no-udp``;
  aiortc's ICE (aioice) has no ICE-TCP (RFC 6544), so it relays — what this test is for;
- ``proxy-only``: aiortc has no HTTP proxy support of its own, so this client opens its
  TURN-over-TLS connection through the proxy itself (a CONNECT tunnel, RFC 9110 §9.3.6)
  and gives aiortc a local ``turn:`` URL for it.

Needs root (network namespaces, nftables); without it the tests skip and say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from lab.testing import Pinhole

EXPECTED = {
    "open": "udp/5004",
    "no-udp": "turn-tls",
    "tls-only": "turn-tls",
    "proxy-only": "turn-tls+http-proxy",
}


@pytest.mark.parametrize("pinhole_lab", list(EXPECTED), indirect=True)
def test_aiortc_ends_on_the_transport_the_profile_leaves(
        pinhole_lab: Pinhole, monkeypatch: pytest.MonkeyPatch) -> None:
    other = pinhole_lab.start(["pinhole", "--json", "call", "--seconds", "600"], name="other")
    env = pinhole_lab.environment(other.meeting_id, name="aiortc")
    # aiortc opens ``turns:`` with OpenSSL's default trust: the stack's CA (SSL_CERT_FILE)
    monkeypatch.setenv("SSL_CERT_FILE", env["SSL_CERT_FILE"])

    ended_on, received = pinhole_lab.run_async(lambda: aiortc_call(env), timeout_s=120)

    assert ended_on == EXPECTED[str(pinhole_lab.profile)]
    assert received > 0  # the other party's audio, relayed by the node, decrypted by aiortc
    report = other.hang_up().json()
    assert report["packets_received"] > 0  # and aiortc's audio reached the other party


async def aiortc_call(env: Mapping[str, str]) -> tuple[str, int]:
    """Join ``env``'s meeting with aiortc; once media came in, the pair it selected and the
    RTP packets it received."""
    tls = ssl.create_default_context(cafile=env["PINHOLE_CA"])
    proxy = env.get("PINHOLE_PROXY")
    headers = {"Authorization": f"Bearer {env['PINHOLE_DEVICE_TOKEN']}"}
    async with aiohttp.ClientSession(headers=headers) as http, \
            contextlib.AsyncExitStack() as cleanup:
        async with http.get(env["PINHOLE_CLOUD"] + "/v1/turn", ssl=tls, proxy=proxy) as answer:
            answer.raise_for_status()
            servers = (await answer.json())["ice_servers"]
        if proxy is not None:  # TURN over TLS through the proxy, behind a local turn: URL
            servers = [{**server, "urls": [await cleanup.enter_async_context(
                turn_tls_through_proxy(url, proxy, tls))]} for server in servers
                for url in server["urls"]]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[
            RTCIceServer(s["urls"], s["username"], s["credential"]) for s in servers]))
        cleanup.push_async_callback(pc.close)
        pc.addTrack(AudioStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        async with http.post(env["PINHOLE_WEBRTC_URL"], json={"sdp": pc.localDescription.sdp},
                             ssl=tls, proxy=proxy) as answer:
            answer.raise_for_status()
            joined = await answer.json()
        await pc.setRemoteDescription(RTCSessionDescription(joined["sdp"], "answer"))
        received = 0
        async with asyncio.timeout(60):
            while received == 0:
                await asyncio.sleep(0.1)
                received = await inbound_packets(pc)
        return ended_on(pc, proxy is not None), received


async def inbound_packets(pc: RTCPeerConnection) -> int:
    """RTP packets aiortc decrypted (its own ``inbound-rtp`` statistics)."""
    report = await pc.getStats()
    return sum(s.packetsReceived for s in report.values() if s.type == "inbound-rtp")


def ended_on(pc: RTCPeerConnection, proxied: bool) -> str:
    """The transport of the candidate pair aiortc's ICE selected: ``udp/<node port>``
    straight to the node, ``turn-tls`` relayed over TURN/TLS. aiortc keeps the selected
    pair in its ICE agent (aioice), which it does not expose: read there."""
    connection: Any = pc.getTransceivers()[0].sender.transport.transport._connection
    [pair] = connection._nominated.values()
    if pair.local_candidate.type != "relay":
        return f"udp/{pair.remote_addr[1]}"
    return "turn-tls+http-proxy" if proxied else "turn-tls"


@contextlib.asynccontextmanager
async def turn_tls_through_proxy(url: str, proxy: str, tls: ssl.SSLContext
                                 ) -> AsyncIterator[str]:
    """A local ``turn:`` URL whose connections go to the ``turns:`` server of ``url``
    through the HTTP ``proxy`` (CONNECT, then TLS to the TURN server, verified)."""
    target = urlsplit(url.replace("turns:", "turns://", 1))
    host, port = target.hostname or "", target.port or 443
    via = urlsplit(proxy)

    async def tunnel(inner: asyncio.StreamReader, inner_w: asyncio.StreamWriter) -> None:
        reader, writer = await asyncio.open_connection(via.hostname, via.port)
        try:
            writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
                         .encode())
            status = await reader.readline()
            if b" 200 " not in status:
                raise ConnectionError(f"the proxy refused the tunnel: {status!r}")
            while (await reader.readline()).strip():
                pass  # the rest of the proxy's answer
            await writer.start_tls(tls, server_hostname=host)
            await asyncio.gather(pipe(inner, writer), pipe(reader, inner_w))
        finally:
            writer.close()
            inner_w.close()

    server = await asyncio.start_server(tunnel, "127.0.0.1", 0)
    local_port = server.sockets[0].getsockname()[1]
    try:
        yield f"turn:127.0.0.1:{local_port}?transport=tcp"
    finally:
        server.close()


async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while data := await source.read(65536):
        sink.write(data)
        await sink.drain()
    with contextlib.suppress(OSError):
        sink.write_eof()

