"""docker-compose.scale.yml says what the loopback stack's scaled form says, once: the
Sentinels' files and the replica's arguments are lab/sentinel.py's, the store URL names
those Sentinels, HAProxy's replicas are the replica services, the replicas run with the
cloud's settings of docker-compose.yml and share the PKI's token key, and the PKI step is
docker-compose.yml's. (HAProxy's file is lab/haproxy.py's at run time: ``python -m
lab.haproxy run``.) Read as YAML, without Compose: a millisecond."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lab import haproxy, sentinel
from lab.compose import COMPOSE_FILE, SCALE_FILE
from lab.pki import Pki
from wire.address import Address


def _services(path: Path) -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(path.read_text())["services"]
    return services


def _address(service: dict[str, Any]) -> str:
    return str(service["networks"]["internet"]["ipv4_address"])


def test_the_scaled_file_says_what_the_lab_says() -> None:
    base, scale = _services(COMPOSE_FILE), _services(SCALE_FILE)
    primary = Address(_address(base["redis"]), 6379)
    sentinels = [Address(_address(scale[f"sentinel-{i}"]), 26379) for i in (1, 2, 3)]
    for i, listen in enumerate(sentinels, 1):
        assert scale[f"sentinel-{i}"]["environment"]["SENTINEL_CONF"] == \
            sentinel.sentinel_config(listen, primary, "/tmp")
    replica = scale["redis-replica"]
    assert replica["command"] == ["redis-server", *sentinel.server_args(
        Address(_address(replica), 6379), "/tmp", "redis-replica", primary)]

    clouds = [scale[f"cloud-{i}"] for i in (1, 2, 3)]
    balancer = haproxy._parser().parse_args(scale["cloud"]["command"][3:])
    assert scale["cloud"]["command"][:4] == ["python", "-m", "lab.haproxy", "run"]
    assert balancer.replica == [haproxy.Replica(f"cloud-{i}", Address(_address(c), 443))
                                for i, c in enumerate(clouds, 1)]
    assert balancer.listen == Address("0.0.0.0", int(base["cloud"]["environment"]["PINHOLE_PORT"]))
    haproxy.config(balancer.listen, balancer.replica, balancer.stats)  # a whole file

    assert clouds[0]["command"] == base["cloud"]["command"]  # the PKI step, then the cloud
    pki = Pki(Path(base["cloud"]["volumes"][0].split(":")[1]), "", "")
    for cloud in clouds:
        env = cloud["environment"]
        assert env["PINHOLE_STORE"] == sentinel.store_url(sentinels)
        assert env["PINHOLE_TOKEN_KEY_FILE"] == str(pki.token_key_file)
        assert {k: v for k, v in env.items() if k not in ("PINHOLE_STORE",
                                                          "PINHOLE_TOKEN_KEY_FILE")} == \
            {k: v for k, v in base["cloud"]["environment"].items() if k != "PINHOLE_STORE"}
        assert cloud["volumes"] == base["cloud"]["volumes"]
