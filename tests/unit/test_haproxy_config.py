"""What the lab stack tells HAProxy (:mod:`lab.haproxy`), and what it reads back.

The real parser accepts the configuration in tests/integration/test_haproxy_replicas.py;
here each line that carries a promise: TLS passed through (``mode tcp``, no
certificate), ``/readyz`` checked over TLS, a hung replica drained within the bound,
WebSockets kept open (``timeout tunnel``), every replica still used when none is ready
(the store failing over).
"""

from __future__ import annotations

import pytest

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
