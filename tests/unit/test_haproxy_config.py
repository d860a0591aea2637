"""What the lab stack tells HAProxy (:mod:`lab.haproxy`), and what it reads back.

The real parser accepts the configuration in tests/integration/test_haproxy_replicas.py;
here each line that carries a promise: TLS passed through (``mode tcp``, no
certificate), ``/readyz`` checked over TLS, a hung replica drained within the bound,
WebSockets kept open (``timeout tunnel``), every replica still used when none is ready
(the store failing over). And ``python -m lab.haproxy``, the same file for
docker-compose.scale.yml.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from lab import haproxy
from lab.haproxy import Checks, Replica, config, parse_stat
from wire.address import Address

LISTEN = Address("127.9.9.1", 443)
STATS = Address("127.9.9.1", 9100)
REPLICAS = [Replica("cloud-1", Address("127.9.9.1", 9001)),
            Replica("cloud-2", Address("127.9.9.1", 9002))]


def _lines() -> list[str]:
    return [line.strip() for line in config(LISTEN, REPLICAS, STATS).splitlines()]


def test_tls_passes_through() -> None:
    lines = _lines()
    assert "mode tcp" in lines
    assert "bind 127.9.9.1:443" in lines
    assert not any(" crt " in line or line.startswith("ssl") for line in lines)


def test_each_replica_is_checked_on_readyz_over_tls() -> None:
    lines = _lines()
    assert "option httpchk" in lines
    assert "http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host 127.9.9.1" in lines
    assert "http-check expect status 200" in lines
    assert "server cloud-1 127.9.9.1:9001 check check-ssl verify none" in lines
    assert "server cloud-2 127.9.9.1:9002 check check-ssl verify none" in lines
    assert "default-server inter 500ms fall 2 rise 2" in lines
    assert "timeout check 1000ms" in lines


def test_websockets_are_tunnels() -> None:
    assert "timeout tunnel 1h" in _lines()


def test_every_replica_serves_when_none_is_ready() -> None:
    lines = _lines()
    assert "option allbackups" in lines
    assert "server cloud-1-unchecked 127.9.9.1:9001 backup" in lines
    assert "server cloud-2-unchecked 127.9.9.1:9002 backup" in lines


def test_statistics_are_read_only_on_loopback() -> None:
    assert "stats socket ipv4@127.9.9.1:9100 level user" in _lines()


def test_drain_bound() -> None:
    assert Checks().drain_bound_s == 3.0  # 2 × (500 ms + 1000 ms)
    assert Checks(inter_ms=200, timeout_ms=300, fall=3).drain_bound_s == 1.5


@pytest.mark.parametrize(("replicas", "message"), [
    ([], "HAProxy needs at least one replica behind it"),
    ([REPLICAS[0], REPLICAS[0]], "replica names must differ: ['cloud-1', 'cloud-1']"),
])
def test_bad_replica_lists_are_refused(replicas: list[Replica], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        config(LISTEN, replicas, STATS)
    assert str(caught.value) == message


def test_checks_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Checks(fall=0)


# the head and rows of HAProxy 2.6's ``show stat`` (columns cut after status)
SHOW_STAT = """\
# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,status
cloud,FRONTEND,,,0,2,4000,9,0,0,0,0,0,,,,OPEN
replicas,cloud-1,0,0,0,1,,4,0,0,,0,,0,0,0,DOWN
replicas,cloud-2,0,0,1,2,,5,0,0,,0,,0,0,0,UP
replicas,cloud-1-unchecked,0,0,0,0,,0,0,0,,0,,0,0,0,no check
replicas,BACKEND,0,0,1,2,400,9,0,0,0,0,,0,0,0,UP

"""


def test_show_stat_names_each_checked_replica() -> None:
    assert parse_stat(SHOW_STAT) == {"cloud-1": "DOWN", "cloud-2": "UP"}


def test_show_stat_of_nothing_is_empty() -> None:
    assert parse_stat("") == {}
    assert parse_stat("not csv at all\n") == {}


COMPOSE_ARGS = ["--listen", "0.0.0.0:443", "--stats", "127.0.0.1:9999", "--health-host",
                "cloud", "--replica", "cloud-1=198.18.0.11:443",
                "--replica", "cloud-2=198.18.0.12:443"]


def test_the_compose_entry_writes_the_stacks_file_and_becomes_haproxy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m lab.haproxy`` (docker-compose.scale.yml's cloud service): the file is
    :func:`config`'s, printed or written; ``run`` writes it and execs HAProxy on it."""
    want = config(Address("0.0.0.0", 443), [
        Replica("cloud-1", Address("198.18.0.11", 443)),
        Replica("cloud-2", Address("198.18.0.12", 443))], Address("127.0.0.1", 9999),
        health_host="cloud")
    assert haproxy.main(["config", *COMPOSE_ARGS]) == 0
    assert capsys.readouterr().out == want
    execs: list[tuple[str, list[str]]] = []

    def execv(path: str, args: list[str]) -> None:
        execs.append((path, args))

    monkeypatch.setattr("shutil.which", lambda *_, **__: "/usr/sbin/haproxy")
    monkeypatch.setattr("os.execv", execv)
    written = tmp_path / "haproxy.cfg"
    assert haproxy.main(["run", "--config", str(written), *COMPOSE_ARGS]) == 0
    assert written.read_text() == want
    assert execs == [("/usr/sbin/haproxy", ["/usr/sbin/haproxy", "-db", "-f", str(written)])]


def test_the_compose_entry_says_what_is_wrong(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["config", "--listen", "0.0.0.0:443", "--stats", "127.0.0.1:9999"]
    assert haproxy.main([*args, "--replica", "a=1.2.3.4:1", "--replica", "a=1.2.3.4:2"]) == 2
    assert "replica names must differ" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        haproxy.main([*args, "--replica", "a"])
    assert "want NAME=HOST:PORT, not 'a'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        haproxy.main([*args, "--replica", "a=1.2.3.4:0"])
    assert "want HOST:PORT, not '1.2.3.4:0'" in capsys.readouterr().err
    # a --config it cannot write: one line and exit 2, not a traceback
    missing = tmp_path / "no-such-dir" / "haproxy.cfg"
    assert haproxy.main(["config", "--config", str(missing), *COMPOSE_ARGS]) == 2
    assert f"cannot write --config {missing}: No such file or directory" in \
        capsys.readouterr().err
    monkeypatch.setattr("shutil.which", lambda *_, **__: None)
    assert haproxy.main(["run", "--config", str(tmp_path / "cfg"), *COMPOSE_ARGS]) == 2
    assert "no haproxy (Debian package haproxy)" in capsys.readouterr().err


def test_states_prints_each_replica_or_says_there_is_none(
        capsys: pytest.CaptureFixture[str]) -> None:
    async def serve() -> int:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            writer.write(SHOW_STAT.encode())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = int(server.sockets[0].getsockname()[1])
        try:
            return await asyncio.to_thread(
                haproxy.main, ["states", "--stats", f"127.0.0.1:{port}"])
        finally:
            server.close()

    assert asyncio.run(serve()) == 0
    assert json.loads(capsys.readouterr().out) == {"cloud-1": "DOWN", "cloud-2": "UP"}
    assert haproxy.main(["states", "--stats", "127.0.0.1:1"]) == 1
    assert "no statistics at 127.0.0.1:1" in capsys.readouterr().err
