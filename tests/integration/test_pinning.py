"""Pinning from enrollment and TLS inspection named in every shape, for the cloud and media.

The middleboxes here are real: a box that terminates TLS with a certificate
from its own CA and opens its own TLS connection onwards (the device trusts
that CA, as an enterprise would install it, or does not), and a box that
reads the ClientHello and cuts the connection. docs/design.md "Cloud API": "The
cloud's TLS key is pinned (SPKI, primary + backup) from the enrollment
material (e.g. stack.json), never learned from a first connection."

Before the fix: a device whose first contact went through a trusted
re-signing box pinned the box's key and worked silently; after IT exempted
the cloud, the device was locked out with a false message. The other shapes
gave library texts (``SSLCertVerificationError``, ``ssl:<ssl.SSLContext
object at 0x...> [None]``) or "503 no_media_node ... open UDP 5004".
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import pytest_asyncio

from client.api import CloudApi, PinError
from client.device import Device
from client.media import MediaError
from lab.net import free_block
from lab.pki import ORG
from lab.stack import NodeSpec, Stack, running_stack
from wire.address import Address
from wire.models import Endpoint
from wire.tls import issue, make_ca, server_context, spki_pin, unverified_client_context
from wire.transports import RungName, Transport

# one stack for the module (:func:`stack`): every test runs on the module's event loop
pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@asynccontextmanager
async def inspecting_proxy(upstream: Address, workdir: Path, host: str | None = None
                           ) -> AsyncIterator[tuple[Address, Path]]:
    """Listen on a loopback address, re-sign with our own CA, relay to ``upstream``."""
    now = datetime.datetime.now(datetime.UTC)
    ca = make_ca(now, "Inspecting firewall CA")
    host = host or free_block() + ".99"
    cert = issue(ca, [host], now)
    (workdir / "mitm-ca.pem").write_bytes(ca.cert_pem)
    (workdir / "mitm.pem").write_bytes(cert.cert_pem)
    (workdir / "mitm.key").write_bytes(cert.key_pem)
    context = server_context(str(workdir / "mitm.pem"), str(workdir / "mitm.key"))

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(
                upstream.host, upstream.port, ssl=unverified_client_context())
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, host, upstream.port, ssl=context)
    try:
        yield Address(host, upstream.port), workdir / "mitm-ca.pem"
    finally:
        server.close()


@asynccontextmanager
async def cutting_box(port: int) -> AsyncIterator[Address]:
    """A box that reads the ClientHello and closes the connection (no TLS answer)."""
    host = free_block() + ".98"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            await reader.read(1)
        writer.close()

    server = await asyncio.start_server(handle, host, port)
    try:
        yield Address(host, port)
    finally:
        server.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One stack for the module's tests: each brings its own devices, cache, meetings and
    boxes (on addresses of their own), and none changes the cloud, its settings or its node
    (the test that needs a node of its own starts its own stack)."""
    async with running_stack([NodeSpec("node-a", "eu", 0)],
                             state_dir=tmp_path_factory.mktemp("pinning") / "s") as s:
        yield s


def _cloud(stack: Stack) -> Address:
    host, port = stack.cloud_url.removeprefix("https://").rsplit(":", 1)
    return Address(host, int(port))


def _trusting(*ca_files: str | Path) -> ssl.SSLContext:
    context = ssl.create_default_context()
    for ca in ca_files:
        context.load_verify_locations(str(ca))
    return context


def _bundle(path: Path, *ca_files: str | Path) -> Path:
    """One CA file trusting several CAs (an enterprise adds its inspection CA)."""
    path.write_text("".join(Path(f).read_text() for f in ca_files))
    return path


async def pinhole(*argv: str, cache: Path) -> tuple[int, str, str]:
    """Run the ``pinhole`` CLI; its exit code, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client", "--cache-dir", str(cache), *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("PINHOLE_")})
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _stack_json(stack: Stack) -> str:
    return str(stack.state_dir / "stack.json")


async def test_stack_json_carries_the_cloud_pins_primary_and_backup(stack: Stack) -> None:
    """RFC 7469 §4.3: at least one backup pin, for a key not in the current chain."""
    pins = json.loads(Path(_stack_json(stack)).read_text())["pins"]
    cert = (stack.state_dir / "cloud.pem").read_bytes()
    assert len(pins) == 2 and pins[0] == spki_pin(cert) and pins[1] != pins[0]


async def test_first_contact_through_a_trusted_re_signing_box_fails_and_never_pins_it(
    stack: Stack, tmp_path: Path
) -> None:
    """The device trusts the box's CA. Its first contact through the box is refused with a
    true message (the name, the key seen, what to exempt); nothing of the box is kept, so once
    IT exempts the cloud the same device works at once (before: TOFU pinned the box's key and
    the device was then locked out)."""
    cache = tmp_path / "cache"
    async with inspecting_proxy(_cloud(stack), tmp_path) as (mitm, mitm_ca):
        box_key = spki_pin((tmp_path / "mitm.pem").read_bytes())
        trusted = _bundle(tmp_path / "trusted.pem", stack.ca_file, mitm_ca)
        code, _, err = await pinhole("--stack", _stack_json(stack), "--cloud",
                                     f"https://{mitm.host}:{mitm.port}", "--ca", str(trusted),
                                     "register", cache=cache)
        assert code == 5, err  # exit 5: trust
        assert f"TLS inspection of {mitm.host}:{mitm.port}: it presented public key {box_key}" \
            in err
        assert "none of the pins of the enrollment material" in err
        assert "exempt them from HTTPS inspection" in err and "pinhole pin --from-stack" in err
        assert "Traceback" not in err
    for kept in cache.rglob("*"):
        assert box_key not in kept.read_text(), f"{kept} keeps the box's key"
    # IT exempts the cloud: the same device, the same cache, straight to the cloud
    code, out, err = await pinhole("--stack", _stack_json(stack), "register", cache=cache)
    assert code == 0, err
    assert "registered" in out


async def test_a_cached_pin_from_the_old_trust_on_first_use_is_ignored(
    stack: Stack, tmp_path: Path
) -> None:
    """The former lock-out: an identity file that kept a box's key (as the old client wrote
    it) no longer pins anything; the enrollment material's pins apply."""
    cache = tmp_path / "cache"
    code, _, err = await pinhole("--stack", _stack_json(stack), "register", cache=cache)
    assert code == 0, err
    [identity] = cache.glob("device-*.json")
    data = json.loads(identity.read_text())
    assert "pin" not in data  # nothing learned from the connection
    data["pin"] = "sha256/" + "A" * 43 + "="  # what the old client had learned from a box
    identity.write_text(json.dumps(data))
    code, _, err = await pinhole("--stack", _stack_json(stack), "register", cache=cache)
    assert code == 0, err


async def test_re_pinning_is_explicit_and_logged(stack: Stack, tmp_path: Path) -> None:
    """A real key rotation: new enrollment material carries the new pins; ``pinhole pin
    --from-stack`` takes them, logs it, and the cloud's new key is then accepted. ``--reset``
    goes back to the enrollment material."""
    cache = tmp_path / "cache"
    async with inspecting_proxy(_cloud(stack), tmp_path) as (moved, new_ca):
        # the "rotated" cloud: a new key, a new address, a CA the device trusts
        url = f"https://{moved.host}:{moved.port}"
        new_key = spki_pin((tmp_path / "mitm.pem").read_bytes())
        trusted = _bundle(tmp_path / "trusted.pem", stack.ca_file, new_ca)
        rotated = json.loads(Path(_stack_json(stack)).read_text())
        rotated.update({"cloud": url, "ca": str(trusted), "pins": [new_key, rotated["pins"][1]]})
        (tmp_path / "new-stack.json").write_text(json.dumps(rotated))
        code, _, err = await pinhole("--stack", _stack_json(stack), "--cloud", url,
                                     "--ca", str(trusted), "register", cache=cache)
        assert code == 5 and "TLS inspection of" in err  # before the re-pin: refused
        code, out, err = await pinhole("--json", "pin", "--from-stack",
                                       str(tmp_path / "new-stack.json"), cache=cache)
        assert code == 0, err
        assert f"re-pinned {url}" in err and new_key in err
        assert f"re-pinned {url}" in (cache / "pins.log").read_text()
        assert json.loads(out)["pins"][0] == new_key
        code, out, err = await pinhole("--stack", _stack_json(stack), "--cloud", url,
                                       "--ca", str(trusted), "--json", "pin", cache=cache)
        assert json.loads(out)["source"].startswith("re-pinned from")
        code, _, err = await pinhole("--stack", _stack_json(stack), "--cloud", url,
                                     "--ca", str(trusted), "register", cache=cache)
        assert code == 0, err
        code, _, err = await pinhole("--stack", _stack_json(stack), "--cloud", url,
                                     "--ca", str(trusted), "pin", "--reset", cache=cache)
        assert code == 0 and "re-pin of" in err
        code, _, err = await pinhole("--stack", _stack_json(stack), "--cloud", url,
                                     "--ca", str(trusted), "register", cache=cache)
        assert code == 5 and "TLS inspection of" in err


async def test_an_untrusted_inspection_ca_is_named(stack: Stack, tmp_path: Path) -> None:
    """The box re-signs with a CA the device does not trust: before, the raw
    SSLCertVerificationError text; now the inspection and what to exempt."""
    async with inspecting_proxy(_cloud(stack), tmp_path) as (mitm, _):
        code, _, err = await pinhole("--stack", _stack_json(stack), "--cloud",
                                     f"https://{mitm.host}:{mitm.port}", "register",
                                     cache=tmp_path / "cache")
    assert code == 5
    assert f"TLS inspection of {mitm.host}:{mitm.port}: the certificate presented at " \
        f"{mitm.host}:{mitm.port} did not verify against --ca {stack.ca_file}" in err
    assert "exempt them from HTTPS inspection" in err


async def test_a_box_that_cuts_after_the_client_hello_is_named(stack: Stack,
                                                               tmp_path: Path) -> None:
    """Before: "ssl:<ssl.SSLContext object at 0x...> [None]"."""
    async with cutting_box(_cloud(stack).port) as box:
        code, _, err = await pinhole("--stack", _stack_json(stack), "--cloud",
                                     f"https://{box.host}:{box.port}", "register",
                                     cache=tmp_path / "cache")
        # netcheck says the same of the cloud (it cannot even register through the box)
        n_code, _, n_err = await pinhole("--stack", _stack_json(stack), "--cloud",
                                         f"https://{box.host}:{box.port}", "netcheck",
                                         cache=tmp_path / "cache")
    # netcheck reports it as a row and its verdict is no signaling (3, the CLI's scale)
    assert n_code == 3 and f"TLS inspection of {box.host}:{box.port}" in n_err
    assert code == 5
    assert f"TLS inspection of {box.host}:{box.port}: the connection was cut during the TLS " \
        "handshake" in err
    assert "SSLContext object" not in err


async def test_inspected_cloud_connection_fails_the_pin_in_the_library(
    stack: Stack, tmp_path: Path
) -> None:
    """The library: pins given, a trusted re-signing box is a PinError naming it."""
    async with inspecting_proxy(_cloud(stack), tmp_path) as (mitm, mitm_ca):
        url = f"https://{mitm.host}:{mitm.port}"
        pinned = CloudApi(url, _trusting(stack.ca_file, mitm_ca), pins=stack.pins)
        with pytest.raises(PinError, match=r"TLS inspection of " + mitm.host.replace(".", r"\.")
                           + r":\d+: it presented public key sha256/"):
            await Device(pinned).register(ORG, stack.enrollment_key, "carol")
        await pinned.close()


async def test_inspected_media_tls_fails_the_node_fingerprint(stack: Stack,
                                                              tmp_path: Path) -> None:
    """A node's TLS certificate must match the fingerprint in the node list."""
    device = Device(stack.api())
    await device.register(ORG, stack.enrollment_key, "alice")
    await device.discover()
    joined = await device.join((await device.api.create_meeting()).id)
    tls = next(e for e in joined.node.endpoints if e.rung == "tls/443")
    async with inspecting_proxy(Address(joined.node.address, tls.port), tmp_path) as (mitm, _):
        node = joined.node.model_copy(update={"address": mitm.host})
        intercepted = joined.model_copy(update={"node": node, "plan": [
            Endpoint(rung=RungName.TLS_443, transport=Transport.TLS, port=mitm.port)]})
        with pytest.raises(MediaError, match=r"TLS inspection of media node node-a \("
                           + mitm.host.replace(".", r"\.") + r":\d+\): it presented certificate"):
            await device.connect(intercepted)
    await device.api.close()


async def test_a_re_signed_node_on_tls_443_is_named_by_call_and_netcheck(tmp_path: Path) -> None:
    """The node offers TLS only and a re-signing box sits at its published address. Before:
    "503 no_media_node ... open UDP 5004", although the probe had seen the certificate fail.
    Now ``pinhole call`` and ``netcheck`` both name the inspection of the node's address."""
    prefix, box = free_block(), free_block() + ".97"
    real = f"{prefix}.2"
    spec = NodeSpec("node-a", "eu", 0, ("--no-udp", "--no-tcp", "--advertise", box,
                                        "--listen", real))
    async with running_stack([spec], state_dir=tmp_path / "s", prefix=prefix) as stack:
        port = next(e["port"] for e in stack.nodes[0]["endpoints"] if e["rung"] == "tls/443")
        async with inspecting_proxy(Address(real, port), tmp_path, host=box):
            code, _, err = await pinhole("--stack", _stack_json(stack), "call", "--meeting",
                                         "m-insp", "--create", "--seconds", "1",
                                         cache=tmp_path / "cache")
            assert code == 5, err
            assert f"TLS inspection of media node node-a ({box}:{port})" in err, err
            assert "exempt them" in err and "UDP 5004" not in err
            code, out, err = await pinhole("--stack", _stack_json(stack), "--json",
                                           "netcheck", cache=tmp_path / "cache")
            assert code == 4, err  # no media path: the one rung left is inspected
            findings = json.loads(out)["netcheck"]["inspection"]
            assert any(f"TLS inspection of media node node-a ({box}:{port})" in f
                       for f in findings)


async def test_a_box_that_cuts_a_media_tls_handshake_is_named(stack: Stack) -> None:
    """The media node's TLS 443 behind a box that reads the ClientHello and hangs up."""
    device = Device(stack.api())
    await device.register(ORG, stack.enrollment_key, "alice")
    await device.discover()
    joined = await device.join((await device.api.create_meeting()).id)
    tls = next(e for e in joined.node.endpoints if e.rung == "tls/443")
    async with cutting_box(tls.port) as box:
        node = joined.node.model_copy(update={"address": box.host})
        intercepted = joined.model_copy(update={"node": node, "plan": [
            Endpoint(rung=RungName.TLS_443, transport=Transport.TLS, port=box.port)]})
        with pytest.raises(MediaError, match=r"TLS inspection of media node node-a \("
                           + box.host.replace(".", r"\.") + r":\d+\): the connection was cut "
                           r"during the TLS handshake"):
            await device.connect(intercepted)
    await device.api.close()
