"""``python -m lab.health``, docker-compose.yml's healthcheck: what it calls healthy (a 200
with the JSON fields asked for, over HTTP or HTTPS verified with the stack's CA; a TCP port
that accepts; a command that exits 0) and how a check is held in the image: a check that
follows a healthy one watches once a second and answers at the first failure; one that
follows a failure, or none, answers at once, or waits only when asked; without the image's
PINHOLE_HEALTH_DIR every check answers at once."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from lab import health, smoke
from lab.pki import write_pki


class _Handler(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, tuple[int, bytes]]] = {}

    def do_GET(self) -> None:
        status, body = self.answers.get(self.path, (404, b""))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serve(context: ssl.SSLContext | None = None) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def http_server() -> Iterator[str]:
    _Handler.answers = {
        "/healthz": (200, json.dumps({"status": "ok", "node_id": "node-near",
                                      "control": True}).encode()),
        "/starting": (200, json.dumps({"status": "ok", "control": False}).encode()),
        "/readyz": (503, json.dumps({"ok": False}).encode()),
        "/text": (200, b"fine"),
    }
    with _serve() as address:
        yield address


def test_http_is_healthy_on_200_with_the_fields_asked_for(http_server: str) -> None:
    url = f"http://{http_server}"
    assert health.check(f"{url}/healthz", None, ["control=true"], 3) is None
    assert health.check(f"{url}/healthz", None, ["control=true", "node_id=node-near"], 3) is None
    assert health.check(f"{url}/text", None, [], 3) is None  # no field asked for: any body
    assert health.check(f"{url}/starting", None, ["control=true"], 3) == (
        f"{url}/starting: control is false, not true")
    assert health.check(f"{url}/readyz", None, [], 3) == f"{url}/readyz: HTTP 503"
    assert health.check(f"{url}/text", None, ["ok=true"], 3) == f"{url}/text did not answer JSON"


def test_https_is_verified_with_the_stacks_ca(tmp_path: Path) -> None:
    pki = write_pki(tmp_path / "pki", ["cloud", "127.0.0.1"])
    _Handler.answers = {"/readyz": (200, json.dumps({"ok": True, "store": "redis"}).encode())}
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    with _serve(context) as address:
        url = f"https://{address}/readyz"
        assert health.check(url, str(pki.ca_file), ["ok=true"], 3) is None
        other = write_pki(tmp_path / "other", ["cloud"])  # another stack's CA
        problem = health.check(url, str(other.ca_file), ["ok=true"], 3)
        assert problem is not None and "CERTIFICATE_VERIFY_FAILED" in problem, problem


def test_tcp_and_refused_ports(http_server: str) -> None:
    assert health.check(f"tcp://{http_server}", None, [], 3) is None
    with _closed_port() as port:
        assert "refused" in str(health.check(f"tcp://127.0.0.1:{port}", None, [], 3))
        assert "refused" in str(health.check(f"http://127.0.0.1:{port}/healthz", None, [], 3))
    assert health.check("ftp://x/", None, [], 3) == (
        "ftp://x/: not an http://, https:// or tcp:// URL")


@contextlib.contextmanager
def _closed_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        yield sock.getsockname()[1]


def test_a_command_is_healthy_when_it_exits_0() -> None:
    assert health.run([sys.executable, "-c", "pass"], 10) is None
    assert health.run([sys.executable, "-c", "import sys; sys.exit('no table')"], 10) == (
        f"{sys.executable} exited 1: no table")
    assert "No such file" in str(health.run(["/nonexistent/nft"], 10))


def test_the_command_line(http_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert health.main([f"http://{http_server}/healthz", "--expect", "control=true"]) == 0
    assert health.main([f"http://{http_server}/starting", "--expect", "control=true"]) == 1
    assert "unhealthy: " in capsys.readouterr().err
    assert health.main(["--", sys.executable, "-c", "pass"]) == 0
    for wrong in ([], [f"http://{http_server}/healthz", "--", "true"]):
        with pytest.raises(SystemExit) as exited:
            health.main(wrong)
        assert exited.value.code == 2


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _probe(answers: list[str | None]) -> tuple[list[str | None], Callable[[], str | None]]:
    asked: list[str | None] = []

    def probe() -> str | None:
        asked.append(answers[len(asked)] if len(asked) < len(answers) else answers[-1])
        return asked[-1]
    return asked, probe


def test_a_check_after_a_healthy_one_holds_while_healthy(tmp_path: Path) -> None:
    marker = tmp_path / "healthy"
    clock = _Clock()
    asked, probe = _probe([None])
    # the first healthy answer is never held back: it is what Compose waits for
    assert health.held(probe, marker, hold_s=14, clock=clock, sleep=clock.sleep) is None
    assert len(asked) == 1 and clock.slept == [] and marker.exists()
    # the next one watches once a second, for up to 14 s
    assert health.held(probe, marker, hold_s=14, clock=clock, sleep=clock.sleep) is None
    assert len(asked) == 1 + 15 and clock.slept == [1.0] * 14 and marker.exists()


def test_a_held_check_answers_at_the_first_failure_and_the_next_at_once(tmp_path: Path) -> None:
    marker = tmp_path / "healthy"
    marker.touch()
    clock = _Clock()
    asked, probe = _probe([None, None, None, "control is false"])
    assert health.held(probe, marker, hold_s=14, clock=clock, sleep=clock.sleep) == (
        "control is false")
    assert clock.slept == [1.0] * 3 and not marker.exists()
    # after a failure: at once, so that Docker's retries count seconds as before
    assert health.held(probe, marker, hold_s=14, clock=clock, sleep=clock.sleep) == (
        "control is false")
    assert clock.slept == [1.0] * 3 and len(asked) == 5


def test_a_check_killed_while_held_leaves_no_healthy_answer_behind(tmp_path: Path) -> None:
    marker = tmp_path / "healthy"
    marker.touch()

    def killed() -> str | None:
        raise KeyboardInterrupt  # stands for Docker's kill on its timeout

    with pytest.raises(KeyboardInterrupt):
        health.held(killed, marker, hold_s=14)
    assert not marker.exists()  # the next check answers at once


def test_where_no_answer_can_be_kept_every_check_answers_at_once(tmp_path: Path) -> None:
    """A PINHOLE_HEALTH_DIR that is not there (a container without /dev/shm) holds nothing
    back, and fails no check."""
    marker = tmp_path / "gone" / "healthy"
    clock = _Clock()
    asked, probe = _probe([None])
    for _ in range(2):
        assert health.held(probe, marker, hold_s=14, clock=clock, sleep=clock.sleep) is None
    assert len(asked) == 2 and clock.slept == []


def test_a_waiting_check_answers_as_soon_as_healthy(tmp_path: Path) -> None:
    marker = tmp_path / "healthy"
    clock = _Clock()
    asked, probe = _probe(["no result"] * 6 + [None])
    assert health.held(probe, marker, hold_s=14, wait_s=14, clock=clock,
                       sleep=clock.sleep) is None
    assert len(asked) == 7 and clock.slept == [0.2] * 6 and marker.exists()
    marker.unlink()  # a failed check's, or none
    clock = _Clock()
    _, probe = _probe(["no result"])
    assert health.held(probe, marker, wait_s=14, clock=clock, sleep=clock.sleep) == (
        "no result")
    assert 13.5 < sum(clock.slept) <= 14 and not marker.exists()


def test_outside_the_image_every_check_answers_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pinhole-lab compose`` runs the same healthchecks on the host, one at a time and only
    until healthy, and the host's /dev/shm is not a container's own: only the image sets
    PINHOLE_HEALTH_DIR."""
    monkeypatch.delenv("PINHOLE_HEALTH_DIR", raising=False)
    assert health.marker("http://127.0.0.1:9100/healthz") is None
    asked, probe = _probe([None])
    assert health.held(probe, None, hold_s=14, wait_s=14) is None
    assert len(asked) == 1
    monkeypatch.setenv("PINHOLE_HEALTH_DIR", str(tmp_path))
    one, other = health.marker("http://127.0.0.1:9100/healthz"), health.marker("tcp://x:1")
    assert one is not None and other is not None and one != other
    assert one.parent == tmp_path
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    assert "PINHOLE_HEALTH_DIR=/dev/shm" in dockerfile


def test_smoke_ready_waits_for_the_result_in_the_image(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client's healthcheck, ``smoke ready --wait-s``: healthy as soon as the running
    client's result is there, not at the next check a second later."""
    monkeypatch.setenv("PINHOLE_HEALTH_DIR", str(tmp_path / "shm"))
    (tmp_path / "shm").mkdir()
    out = tmp_path / "client-a.json"
    writer = threading.Timer(0.5, lambda: out.write_text(json.dumps(
        {"exit_code": 0, "packets_received": 7, "writer": smoke.writer()})))
    writer.start()
    try:
        assert smoke.main(["ready", "--wait-s", "20", "--out", str(out)]) == 0
    finally:
        writer.cancel()
    assert list((tmp_path / "shm").iterdir())  # the next check holds
    out.unlink()
    assert smoke.main(["ready", "--wait-s", "0", "--out", str(out)]) == 1
