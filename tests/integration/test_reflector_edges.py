"""The reflector's refusals and failed checks (hybrid_node/reflector.py), in one process.

tests/integration/test_reflector.py proves the checks that pass and the rules named when
nothing answers. These are the other ways a check ends, each with the verdict an operator
reads: a TCP client that sends what is not RFC 4571 framing is dropped and counted, a peer
that answers with what is not a STUN answer (RFC 8489 §6) is not taken for one, a cloud
whose certificate does not verify is named as possible TLS inspection, and a run given
nothing to reach skips or fails every row with its reason.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from pathlib import Path

import pytest

from hybrid_node.reflector import Reflector, check_cloud, main, probe_tcp
from hybrid_node.reflector_report import Check, Verdict
from lab.net import free_port
from tests.prereqs import require_tool
from tests.waiting import until
from wire.address import Address
from wire.multiplex import encode_frame
from wire.stun import build_discovery_probe


async def test_a_tcp_client_that_sends_no_frame_it_can_read_is_dropped() -> None:
    """RFC 4571 §2: a frame longer than a probe can be is a framing error: the connection
    is closed and counted as dropped, nothing is answered."""
    reflector = Reflector()
    await reflector.start("127.0.0.1", 0, 0)
    try:
        _, tcp = reflector.ports()
        reader, writer = await asyncio.open_connection("127.0.0.1", tcp)
        writer.write(b"\xff\xff" + bytes(64))  # announces 65,535 bytes
        await writer.drain()
        assert await reader.read() == b""  # closed, no answer
        writer.close()
        await until(lambda: reflector.dropped == 1, "the connection counted as dropped")
        assert reflector.answered == 0
        # a real probe on a new connection is still answered
        mapped = await probe_tcp(Address("127.0.0.1", tcp))
        assert mapped.host == "127.0.0.1" and reflector.answered == 1
    finally:
        await reflector.close()


async def test_an_answer_that_is_not_stun_is_not_taken_for_one() -> None:
    """A peer on the port that frames back something else (not a Binding success for our
    transaction, RFC 8489 §6) is named as such, not read as a mapped address."""
    async def junk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(2048)
        writer.write(encode_frame(b"HTTP/1.1 400 Bad Request\r\n\r\n"))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(junk, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ConnectionError, match="answered, but not a STUN answer"):
            await probe_tcp(Address("127.0.0.1", port))
    finally:
        server.close()
        await server.wait_closed()
    assert len(build_discovery_probe()) > 20  # what was sent: a real probe


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 that no authority signed."""
    openssl = require_tool("openssl")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


async def test_a_cloud_whose_certificate_does_not_verify_is_named_as_inspection(
        self_signed: tuple[Path, Path]) -> None:
    """The check's HTTPS to the cloud verifies the certificate as the node's control
    channel would: a certificate from another authority (a TLS-inspecting proxy's) fails
    the row and says so; a port where nothing listens fails it with the reason."""
    cert, key = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        # verified against the system's authorities, which did not sign it
        result = await check_cloud(f"https://127.0.0.1:{port}", None, timeout_s=10)
    finally:
        server.close()
        await server.wait_closed()
    assert (result.check, result.verdict) == (Check.CLOUD_TLS, Verdict.FAIL)
    assert "did not verify" in result.detail and "TLS inspection?" in result.detail
    closed = await check_cloud(f"https://127.0.0.1:{free_port()}", None, timeout_s=10)
    assert closed.verdict is Verdict.FAIL and closed.detail.startswith("127.0.0.1:")


def test_a_check_without_a_reflector_or_clients_skips_those_rows(
        capsys: pytest.CaptureFixture[str]) -> None:
    """``check --cloud URL`` alone: the cascade and clients rows are skipped with the flag
    that would run them; the cloud row fails (nothing listens), exit 3: no HTTPS."""
    code = main(["check", "--cloud", f"https://127.0.0.1:{free_port()}", "--json"])
    document = json.loads(capsys.readouterr().out)
    rows = {c["check"]: (c["verdict"], c["detail"]) for c in document["reflector"]["checks"]}
    assert code == 3, document
    assert rows["cloud-tls-443"][0] == "fail"
    assert rows["cascade-udp"] == ("skipped", "no --reflector")
    assert rows["clients-udp"] == ("skipped", "no --clients-s")


def test_a_probe_that_reaches_nothing_fails_both_rows_and_exits_4(
        capsys: pytest.CaptureFixture[str]) -> None:
    """``reflector probe`` from a client when the node's host answers on neither port: the
    table says so row by row, and the exit status is 4 (no media path)."""
    code = main(["probe", "--reflector", "127.0.0.1", "--udp-port", str(free_port()),
                 "--tcp-port", str(free_port())])
    table = capsys.readouterr().out
    assert code == 4, table
    assert table.count("fail") >= 2, table
