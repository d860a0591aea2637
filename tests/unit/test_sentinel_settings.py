"""The ``redis+sentinel://`` store URL (:mod:`cloud.redis_sentinel`) and the lab's
Sentinel files (:mod:`lab.sentinel`)."""

from __future__ import annotations

import pytest

from cloud.redis_sentinel import SentinelTarget, parse
from cloud.settings import parse as parse_settings
from edge.boundary import Failure
from lab import sentinel
from wire.address import Address


def test_three_sentinels_a_service_and_a_database() -> None:
    assert parse("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379,sentinel.example:26380"
                 "/pinhole/2") == SentinelTarget(
        (Address("10.0.0.1", 26379), Address("10.0.0.2", 26379),
         Address("sentinel.example", 26380)), "pinhole", 2)


def test_the_database_defaults_to_0_and_a_password_is_the_servers() -> None:
    target = parse("redis+sentinel://:s%40cret@127.0.0.1:26379/pinhole")
    assert (target.db, target.password, target.sentinels) == (
        0, "s@cret", (Address("127.0.0.1", 26379),))


def test_an_ipv6_sentinel() -> None:
    assert parse("redis+sentinel://[::1]:26379/p/0").sentinels == (Address("::1", 26379),)


@pytest.mark.parametrize(("url", "message"), [
    ("redis://127.0.0.1:6379/0", "not a redis+sentinel:// URL: 'redis://127.0.0.1:6379/0'"),
    ("redis+sentinel://127.0.0.1/pinhole/0",
     "'redis+sentinel://127.0.0.1/pinhole/0': want HOST:PORT for each Sentinel, "
     "not '127.0.0.1'"),
    ("redis+sentinel://127.0.0.1:0/pinhole/0",
     "'redis+sentinel://127.0.0.1:0/pinhole/0': want HOST:PORT for each Sentinel, "
     "not '127.0.0.1:0'"),
    ("redis+sentinel://127.0.0.1:26379",
     "'redis+sentinel://127.0.0.1:26379': name the monitored service after the Sentinels "
     "(…/SERVICE/DB)"),
    ("redis+sentinel://127.0.0.1:26379/pinhole/zero",
     "'redis+sentinel://127.0.0.1:26379/pinhole/zero': the database must be a number, "
     "not 'zero'"),
])
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse(url)
    assert str(caught.value) == message


def test_the_cloud_takes_a_sentinel_store_and_refuses_a_broken_one() -> None:
    url = "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/pinhole/0"
    assert parse_settings(["--store", url]).store == url
    with pytest.raises(Failure) as caught:
        parse_settings(["--store", "redis+sentinel://127.0.0.1/pinhole/0"])
    assert "want HOST:PORT for each Sentinel" in str(caught.value)


def test_the_lab_sentinel_watches_the_primary_with_a_quorum_of_two() -> None:
    text = sentinel.sentinel_config(Address("127.5.5.1", 26379), Address("127.5.5.1", 6379),
                                    "state")
    lines = text.splitlines()
    assert "sentinel monitor pinhole 127.5.5.1 6379 2" in lines
    assert "sentinel down-after-milliseconds pinhole 1000" in lines
    assert "sentinel failover-timeout pinhole 3000" in lines
    assert "sentinel announce-ip 127.5.5.1" in lines  # not the 127.0.0.1 it connects from


def test_the_lab_replica_announces_the_address_it_listens_on() -> None:
    args = sentinel.server_args(Address("127.5.5.1", 6380), "state", "redis-replica",
                                Address("127.5.5.1", 6379))
    assert args[-5:] == ["--replicaof", "127.5.5.1", "6379",
                         "--replica-announce-ip", "127.5.5.1"]
    assert sentinel.store_url([Address("127.5.5.1", 1), Address("127.5.5.1", 2)]) == \
        "redis+sentinel://127.5.5.1:1,127.5.5.1:2/pinhole/0"
