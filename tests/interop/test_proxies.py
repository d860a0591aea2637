"""Signaling and media through a real HTTP proxy (Debian's tinyproxy, Basic auth).

Seed: the app sends "the signaling and media through the HTTP proxy", which
must allow CONNECT to port 443. Media takes the http-proxy rung: CONNECT
node:443, TLS (the node's certificate checked against the node list), RFC 4571
framing inside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from client.api import CloudApi
from client.device import Device
from client.media import MediaError
from client.proxy import LocalTunnelProxy, ProxyConfig
from lab.net import free_port, wait_for_port
from lab.pki import ORG
from lab.stack import NodeSpec, Stack, running_stack, start_node, wait_healthy
from tests.exchange import exchange
from tests.prereqs import require_tool
from tests.waiting import until
from wire.models import Endpoint, ProbeResult, ReachabilityReport
from wire.tls import client_context
from wire.transports import RungName, Transport

pytestmark = pytest.mark.interop
#: the tests on the module's stack run on the module's event loop, where it runs
ON_THE_MODULE_STACK = pytest.mark.asyncio(loop_scope="module")


def tls_ports(stack: Stack) -> list[int]:
    """The ports the stack's HTTPS really listens on: the cloud's and every node's TLS.

    The seed's proxy allows CONNECT to 443 only; as root the stack listens there. Without
    root it may not bind below 1024 and takes the documented high port (8443, or any free
    one for a node), so the test's proxy allows the ports the stack actually uses: the
    policy under test is "CONNECT to the HTTPS ports", not a number (a user without root
    ran these tests and saw 403 for :8443).
    """
    ports = {int(stack.cloud_url.rsplit(":", 1)[1])}
    for node in stack.nodes:
        ports.update(e["port"] for e in node["endpoints"] if e["rung"] == "tls/443")
    return sorted(ports)


@asynccontextmanager
async def tinyproxy(workdir: Path, user: str, password: str,
                    connect_ports: list[int]) -> AsyncIterator[tuple[int, Path]]:
    binary = require_tool("tinyproxy")
    port = free_port()
    conf, log = workdir / "tinyproxy.conf", workdir / "tinyproxy.log"
    allowed = "".join(f"ConnectPort {p}\n" for p in connect_ports)
    conf.write_text(f"Port {port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\n"
                    f"{allowed}BasicAuth {user} {password}\nLogLevel Connect\n"
                    "MaxClients 50\n")
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(binary, "-d", "-c", str(conf),
                                                    stdout=out, stderr=out)
    try:
        await _listening(proc, port, log)
        yield port, log
    finally:
        await _stopped(proc)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One stack for the module's tests: each has its own proxy, devices and meetings, and
    none changes the cloud or its node list (a test that adds a node has its own stack)."""
    async with running_stack([NodeSpec("node-a", "eu", 0)],
                             state_dir=tmp_path_factory.mktemp("proxies") / "s") as s:
        yield s


@pytest.fixture
async def own_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """A stack for one test that adds a node to it and kills that node."""
    async with running_stack([NodeSpec("node-a", "eu", 0)], state_dir=tmp_path / "s") as s:
        yield s


@ON_THE_MODULE_STACK
async def test_signaling_and_media_cross_tinyproxy_with_basic_auth(
    stack: Stack, tmp_path: Path
) -> None:
    async with tinyproxy(tmp_path, "pinhole", "s3cret", tls_ports(stack)) as (port, log):
        proxy = ProxyConfig("127.0.0.1", port, "pinhole", "s3cret")
        api = CloudApi(stack.cloud_url, client_context(stack.ca_file), proxy=proxy.url)
        alice = Device(api, proxy=proxy)
        await alice.register(ORG, stack.enrollment_key, "alice")  # HTTPS through the proxy
        await api.check_events()  # and the events WebSocket (the websockets client)
        await alice.discover()
        meeting = (await api.create_meeting()).id
        joined = await alice.join(meeting)
        tls = next(e for e in joined.node.endpoints if e.rung == "tls/443")
        only_proxy = joined.model_copy(update={"plan": [
            Endpoint(rung=RungName.HTTP_PROXY, transport=Transport.HTTP_PROXY, port=tls.port)]})
        session = await alice.connect(only_proxy)
        assert session.rung == "http-proxy"

        bob = Device(stack.api())
        await bob.register(ORG, stack.enrollment_key, "bob")
        await bob.discover()
        other = await bob.connect(await bob.join(meeting))
        await exchange(session, other)
        text = log.read_text()
        cloud_host = stack.cloud_url.split("//")[1]
        assert f"CONNECT {cloud_host}" in text  # signaling crossed the proxy
        assert f"CONNECT {joined.node.address}:{tls.port}" in text  # and media did

        # a wrong password is a clear error, not a hang
        wrong = Device(api, proxy=ProxyConfig("127.0.0.1", port, "pinhole", "nope"))
        with pytest.raises(MediaError, match="proxy authentication failed"):
            await wrong.connect(only_proxy)
        for s in (session, other):
            s.close()
        await api.close()
        await bob.api.close()


@asynccontextmanager
async def squid(workdir: Path, scheme: str, user: str, password: str,
                connect_ports: list[int], name: str | None = None) -> AsyncIterator[int]:
    """Debian's squid, CONNECT to the HTTPS ports only (:func:`tls_ports`), with Digest
    (digest_file_auth) or NTLM (ntlm_fake_auth: any NTLM exchange that completes is
    accepted) authentication. Each squid has a service name of its own (``-n``): squid
    names its shared memory after it (/dev/shm/<name>-cf__metadata.shm), and a second squid
    of the same name, from this file's re-run without root beside it, exited 1 with
    "shm_open(/squid-cf__metadata.shm): (17) File exists"."""
    binary = require_tool("squid")
    helper = Path("/usr/lib/squid") / ("digest_file_auth" if scheme == "digest"
                                       else "ntlm_fake_auth")
    if not helper.exists():
        require_tool(helper.name)  # fails under CI with a clear reason
    port = free_port()
    workdir.chmod(0o777)  # squid drops to its own user for logs
    (workdir / "passwd").write_text(f"{user}:{password}\n")
    (workdir / "passwd").chmod(0o644)
    conf = workdir / "squid.conf"
    auth = (f"auth_param digest program {helper} {workdir / 'passwd'}\n"
            "auth_param digest realm pinhole") if scheme == "digest" else \
        f"auth_param ntlm program {helper}\nauth_param ntlm children 2"
    conf.write_text(f"""http_port 127.0.0.1:{port}
{auth}
acl authed proxy_auth REQUIRED
acl SSL_ports port {" ".join(str(p) for p in connect_ports)}
acl CONNECT method CONNECT
http_access deny CONNECT !SSL_ports
http_access allow authed
http_access deny all
cache deny all
pid_filename {workdir / "squid.pid"}
access_log {workdir / "access.log"}
cache_log {workdir / "cache.log"}
coredump_dir {workdir}
shutdown_lifetime 1 seconds
""")
    proc = await asyncio.create_subprocess_exec(binary, "-N", "-n", name or squid_name(),
                                                "-f", str(conf),
                                                stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        await _listening(proc, port, workdir / "cache.log")
        yield port
    finally:
        await _stopped(proc)


def squid_name() -> str:
    """A service name for one squid (letters and digits, as squid wants)."""
    return "pinhole" + secrets.token_hex(4)


async def _listening(proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
    """Wait until the proxy listens on ``port``; if it exits first, fail with its log's
    end at once (a squid that could not start used to cost a 20 s wait and a
    ProcessLookupError from ``terminate``)."""
    listening = asyncio.ensure_future(wait_for_port("127.0.0.1", port, timeout_s=20))
    exited = asyncio.ensure_future(proc.wait())
    await asyncio.wait({listening, exited}, return_when=asyncio.FIRST_COMPLETED)
    if not listening.done():
        listening.cancel()
        said = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
        pytest.fail(f"the proxy exited {proc.returncode} before listening on {port}:\n{said}")
    exited.cancel()
    listening.result()


async def _stopped(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
    await proc.wait()


@pytest.mark.parametrize("scheme", ["digest", "ntlm"])
@ON_THE_MODULE_STACK
async def test_media_crosses_squid_with_digest_or_ntlm(stack: Stack, scheme: str) -> None:
    """RFC 7616 Digest, or NTLM (three legs on one connection), answered to squid's
    challenge; media on the http-proxy rung."""
    # squid runs as its own user: its files live where that user can reach them
    with tempfile.TemporaryDirectory(prefix="pinhole-squid-") as tmp:
        await _squid_call(stack, Path(tmp), scheme)


async def _squid_call(stack: Stack, workdir: Path, scheme: str) -> None:
    async with squid(workdir, scheme, "pinhole", "s3cret", tls_ports(stack)) as port:
        # signaling crosses squid too: aiohttp talks to the loopback shim, whose tunnels
        # authenticate upstream with whatever scheme squid asks for
        shim = await LocalTunnelProxy(ProxyConfig("127.0.0.1", port, "pinhole",
                                                  "s3cret")).start()
        alice_api = CloudApi(stack.cloud_url, client_context(stack.ca_file), proxy=shim.url)
        alice, bob = Device(alice_api), Device(stack.api())
        for device, name in ((alice, "alice"), (bob, "bob")):
            await device.register(ORG, stack.enrollment_key, name)
            await device.discover()
        meeting = (await alice.api.create_meeting()).id
        joined = await alice.join(meeting)
        tls = next(e for e in joined.node.endpoints if e.rung == "tls/443")
        only_proxy = joined.model_copy(update={"plan": [
            Endpoint(rung=RungName.HTTP_PROXY, transport=Transport.HTTP_PROXY, port=tls.port)]})
        alice.proxy = ProxyConfig("127.0.0.1", port, "pinhole", "s3cret")
        session = await alice.connect(only_proxy)
        other = await bob.connect(await bob.join(meeting))
        await exchange(session, other)
        if scheme == "digest":  # ntlm_fake_auth accepts any password
            alice.proxy = ProxyConfig("127.0.0.1", port, "pinhole", "wrong")
            with pytest.raises(MediaError, match="proxy authentication failed"):
                await alice.connect(only_proxy)
        for s in (session, other):
            s.close()
        for device in (alice, bob):
            await device.api.close()
        await shim.close()
        log = workdir / "access.log"
        for where in (f"{joined.node.address}:{tls.port}", stack.cloud_url.split("//")[1]):
            tunnel = rf"TCP_TUNNEL/200 \d+ CONNECT {re.escape(where)} \S"
            # squid logs a tunnel when it ends, a moment after the close
            def logged(pattern: str = tunnel) -> bool:
                return log.exists() and re.search(pattern, log.read_text()) is not None

            await until(logged, f"squid logged the tunnel to {where}")  # media, then signaling


async def _cli(stack: Stack, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client", "--stack", str(stack.state_dir / "stack.json"),
        "--no-cache", "--json", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


@ON_THE_MODULE_STACK
async def test_pac_file_names_the_proxy_for_signaling(stack: Stack, tmp_path: Path) -> None:
    """Seed: the desktop app finds its proxy by PAC; mobile devices must set it by hand."""
    async with tinyproxy(tmp_path, "pinhole", "s3cret", tls_ports(stack)) as (port, log):
        cloud_host = stack.cloud_url.split("//")[1].rsplit(":", 1)[0]
        pac = ("function FindProxyForURL(url, host) {\n"
               f'  if (host == "{cloud_host}") return "PROXY 127.0.0.1:{port}; DIRECT";\n'
               '  return "DIRECT";\n}\n')

        async def serve_pac(request: web.Request) -> web.Response:
            return web.Response(text=pac, content_type="application/x-ns-proxy-autoconfig")

        app = web.Application()
        app.router.add_get("/proxy.pac", serve_pac)
        runner = web.AppRunner(app)
        await runner.setup()
        pac_port = free_port()
        await web.TCPSite(runner, "127.0.0.1", pac_port).start()
        pac_url = f"http://127.0.0.1:{pac_port}/proxy.pac"
        try:
            code, out, err = await _cli(stack, "--pac-url", pac_url, "--proxy-user", "pinhole",
                                        "--proxy-password", "s3cret", "register")
            assert code == 0, err
            assert json.loads(out)["device_id"]
            assert f"CONNECT {stack.cloud_url.split('//')[1]}" in log.read_text()
            code, _, err = await _cli(stack, "--profile", "mobile", "--pac-url", pac_url,
                                      "register")
            assert code == 2  # usage: the profile forbids the flag (exit codes in the README)
            assert "mobile devices cannot discover a proxy by pac" in err
        finally:
            await runner.cleanup()


@ON_THE_MODULE_STACK
async def test_netcheck_names_the_proxy_and_its_authentication(
        stack: Stack, tmp_path: Path) -> None:
    """netcheck's proxy rows ("proxy discovery and auth"): with the right Basic
    credentials the CONNECT row is ok and signaling crosses; with a wrong password the row
    says the proxy refused the authentication and the verdict is no signaling (exit 3)."""
    async with tinyproxy(tmp_path, "pinhole", "s3cret", tls_ports(stack)) as (port, _):
        good = f"http://pinhole:s3cret@127.0.0.1:{port}"
        rc, out, _ = await _cli(stack, "--proxy", good, "netcheck")
        result = json.loads(out)["netcheck"]
        rows = {c["check"]: c for c in result["checks"]}
        assert rows["discovery"]["detail"] == "from explicit"
        assert rows["CONNECT"]["status"] == "ok" and rows["CONNECT"]["detail"] == "authenticated"
        assert rows["HTTPS"]["status"] == "ok" and rows["node-a http-proxy"]["status"] == "ok"
        assert rc == 0  # loopback: UDP 5004 answers directly
        rc, out, _ = await _cli(stack, "--proxy", f"http://pinhole:nope@127.0.0.1:{port}",
                                "netcheck")
        rows = {c["check"]: c for c in json.loads(out)["netcheck"]["checks"]}
        assert rc == 3 and rows["CONNECT"]["status"] == "blocked"
        assert "proxy authentication failed" in rows["CONNECT"]["detail"]


@ON_THE_MODULE_STACK
async def test_a_proxy_that_refuses_the_cloud_port_is_named_with_the_port(
        stack: Stack, tmp_path: Path) -> None:
    """Seed: the proxy "must allow CONNECT to port 443". A proxy whose policy leaves out the
    port the cloud really uses (a 443-only proxy in front of a stack on 8443, as a user
    without root runs it) is reported as such: the CONNECT row names the port and the
    proxy's answer, and the verdict is no signaling (exit 3), not a hang or a traceback."""
    used = tls_ports(stack)
    other = next(p for p in (443, 563) if p not in used)  # 563: squid's other SSL port
    async with tinyproxy(tmp_path, "pinhole", "s3cret", [other]) as (port, _):
        rc, out, err = await _cli(stack, "--proxy", f"http://pinhole:s3cret@127.0.0.1:{port}",
                                  "netcheck")
        assert "Traceback" not in err
        rows = {c["check"]: c for c in json.loads(out)["netcheck"]["checks"]}
        cloud_port = stack.cloud_url.rsplit(":", 1)[1]
        assert rc == 3 and rows["CONNECT"]["status"] == "blocked", rows["CONNECT"]
        assert f":{cloud_port}" in rows["CONNECT"]["detail"], rows["CONNECT"]
        assert "403" in rows["CONNECT"]["detail"], rows["CONNECT"]


@pytest.mark.parametrize("scheme", ["basic", "digest", "ntlm"])
async def test_a_hybrid_nodes_signalling_crosses_the_proxy_and_its_media_does_not(
        own_stack: Stack, scheme: str) -> None:
    """Need: "Behind an explicit HTTP proxy: the hybrid node's signalling to the cloud
    through the enterprise proxy (Basic/Digest/NTLM, as the client does), media still
    direct." ``pinhole-hybrid-node --proxy`` registers and holds its control channel
    through tinyproxy (Basic) or squid (Digest, NTLM), the client's own CONNECT code
    (``edge.http_proxy``) answering the challenge; a device on it and one on the cloud
    node hear each other over the cascade, which no proxy carries; the node's log never
    shows the password."""
    stack = own_stack
    with tempfile.TemporaryDirectory(prefix="pinhole-proxy-") as tmp:
        workdir = Path(tmp)
        async with contextlib.AsyncExitStack() as proxies:
            if scheme == "basic":
                port, log = await proxies.enter_async_context(
                    tinyproxy(workdir, "pinhole", "s3cret", tls_ports(stack)))
            else:
                port = await proxies.enter_async_context(
                    squid(workdir, scheme, "pinhole", "s3cret", tls_ports(stack)))
                log = workdir / "access.log"
            spec = NodeSpec("hq-1", "on-prem", 0, org=ORG, extra_args=(
                "--proxy", f"http://pinhole:s3cret@127.0.0.1:{port}"))
            await start_node(stack, spec)
            await wait_healthy(stack, {spec.id})
            alice, bob = Device(stack.api()), Device(stack.api())
            await alice.register(ORG, stack.enrollment_key, "alice")
            await alice.discover()
            await bob.register(ORG, stack.enrollment_key, "bob")
            await bob.api.put_reachability(ReachabilityReport(results=[ProbeResult(
                node_id="node-a", rung=RungName.UDP_5004, reachable=True, rtt_ms=5.0)]))
            meeting = (await alice.api.create_meeting()).id
            here, there = await alice.join(meeting), await bob.join(meeting)
            assert (here.node.id, there.node.id) == ("hq-1", "node-a")
            # the node dials the cascade once both joined; packets sent before it is up are
            # lost (defect: the exchange once began before it and came up short)
            await until(lambda: bool(re.search(
                r"cascade \S+ to node-a up on",
                (stack.state_dir / "hq-1.log").read_text(errors="replace"))),
                "the hybrid node's cascade to node-a up")
            sessions = [await alice.connect(here), await bob.connect(there)]
            await exchange(sessions[0], sessions[1])
            for session in sessions:
                session.close()
            for device in (alice, bob):
                await device.api.close()
            await stack.kill(spec.id)  # its tunnels end: squid logs a tunnel when it ends
            cloud = stack.cloud_url.split("//")[1]

            def crossed() -> bool:
                return log.exists() and f"CONNECT {cloud}" in log.read_text()

            await until(crossed, f"the proxy logged the node's tunnel to {cloud}")
            node_a = next(n["address"] for n in stack.nodes if n["id"] == "node-a")
            assert f"CONNECT {node_a}" not in log.read_text()  # the cascade went direct
        assert "s3cret" not in (stack.state_dir / "hq-1.log").read_text()


@ON_THE_MODULE_STACK
async def test_two_squids_at_once_keep_their_own_shared_memory(stack: Stack) -> None:
    """The defect in :func:`squid`'s docstring: two squids at once each name their shared
    memory after their own service name, so neither finds the other's segments. Each is
    looked for by its own name: other squids of the suite may run beside them."""
    first, second = squid_name(), squid_name()
    assert first != second
    with tempfile.TemporaryDirectory(prefix="pinhole-squid-") as one, \
            tempfile.TemporaryDirectory(prefix="pinhole-squid-") as two:
        async with squid(Path(one), "digest", "pinhole", "s3cret", tls_ports(stack), first), \
                squid(Path(two), "digest", "pinhole", "s3cret", tls_ports(stack), second):
            names = {p.name.split("-cf__")[0] for p in Path("/dev/shm").glob("*-cf__*.shm")}
            assert {first, second} <= names, names
