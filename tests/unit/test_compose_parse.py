"""The compose emulation reads Compose's normalised document as Compose means it: durations,
healthcheck forms (Compose file reference, "healthcheck"), volume forms (short and long
syntax), list or mapping environment/labels/depends_on, and refuses what it cannot emulate."""

from __future__ import annotations

import ipaddress

import pytest

from lab import firewall
from lab.compose import COMPOSE_FILE, HYBRID_FILE, duration_s, files_for, parse
from lab.firewall import HYBRID_PROFILES, LabError


@pytest.mark.parametrize(("text", "seconds"), [
    ("1s", 1.0), ("500ms", 0.5), ("1m30s", 90.0), ("2h", 7200.0), (None, 7.0), (3, 3.0),
])
def test_compose_durations(text: str | int | None, seconds: float) -> None:
    assert duration_s(text, 7.0) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1x", "s", "1s garbage"])
def test_a_duration_compose_would_refuse_is_an_error(text: str) -> None:
    with pytest.raises(LabError, match="duration"):
        duration_s(text, 1.0)


NETWORKS = {"internet": {"ipam": {"config": [{"subnet": "198.18.0.0/24"}]}},
            "enterprise": {"internal": True, "ipam": {"config": [{"subnet": "10.99.0.0/24"}]}}}


def test_every_form_of_a_service_is_read() -> None:
    project = parse({"networks": NETWORKS, "services": {
        "cloud": {
            "command": "pinhole-cloud --port 443",
            "environment": ["A=1", "EMPTY"],
            "networks": {"internet": {"ipv4_address": "198.18.0.1"}},
            "healthcheck": {"test": ["CMD-SHELL", "curl -f", "x"], "interval": "2s",
                            "retries": 5, "start_period": "1s"},
            "volumes": ["state:/var/lib/pinhole:rw"],
            "labels": ["pinhole.smoke=true"],
            "depends_on": ["redis"],
        },
        "redis": {
            "command": ["redis-server"],
            "environment": {"B": 2, "UNSET": None},
            "networks": {"internet": {"ipv4_address": "198.18.0.20"}},
            "healthcheck": {"test": "redis-cli ping"},
            "volumes": [{"type": "volume", "source": "state", "target": "/data"}],
            "depends_on": {"x": {"condition": "service_healthy"}},
            "sysctls": {"net.ipv4.ip_forward": 1},
        },
        "pki": {"command": ["true"], "network_mode": "none", "healthcheck": {"disable": True}},
    }})
    cloud, redis, pki = (project.services[n] for n in ("cloud", "redis", "pki"))
    assert cloud.command == ["pinhole-cloud", "--port", "443"]
    assert cloud.environment == {"A": "1"} and redis.environment == {"B": "2"}
    assert cloud.healthcheck == ["sh", "-c", "curl -f x"] and cloud.interval_s == 2.0
    assert (cloud.retries, cloud.start_period_s, cloud.smoke) == (5, 1.0, True)
    assert redis.healthcheck == ["sh", "-c", "redis-cli ping"] and not redis.smoke
    assert cloud.volumes == [("state", "/var/lib/pinhole")]
    assert redis.volumes == [("state", "/data")]
    assert cloud.depends_on == {"redis": "service_started"}
    assert redis.depends_on == {"x": "service_healthy"}
    assert redis.sysctls == {"net.ipv4.ip_forward": "1"}
    assert pki.healthcheck is None and pki.networks == {}
    assert project.networks["enterprise"] == ipaddress.IPv4Network("10.99.0.0/24")
    assert project.internal == {"enterprise"}


def test_what_cannot_be_emulated_is_refused_with_the_reason() -> None:
    with pytest.raises(LabError, match="ipv4_address on network internet"):
        parse({"networks": NETWORKS, "services": {"a": {"networks": ["internet"]}}})
    with pytest.raises(LabError, match="ipam subnet"):
        parse({"networks": {"plain": None}, "services": {}})


def test_the_hybrid_profiles_take_the_hybrid_nodes_file_and_only_they() -> None:
    """The cloud prefers a reachable hybrid node of the org (rule ``hybrid-local``), so the
    hybrid node's service lives in docker-compose.hybrid.yml: with it in every run, the
    other profiles' clients would end on it instead of the cloud nodes they are about."""
    assert files_for("hybrid") == [COMPOSE_FILE, HYBRID_FILE]
    assert files_for("hybrid-tls-only") == [COMPOSE_FILE, HYBRID_FILE]
    for profile in ("open", "no-udp", "proxy-only", "stun-inspection"):
        assert files_for(profile) == [COMPOSE_FILE], profile


@pytest.mark.parametrize("profile", HYBRID_PROFILES)
def test_a_hybrid_profile_without_a_hybrid_node_stops_the_firewall_at_start(
        profile: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``PINHOLE_FIREWALL_PROFILE=hybrid docker compose up`` without docker-compose.hybrid.yml: no
    media could leave but through a hybrid node that is not there. The firewall exits 2
    before touching nftables and says which file to add (not two clients timing out)."""
    monkeypatch.delenv("PINHOLE_HYBRID_NODE", raising=False)
    monkeypatch.setenv("PINHOLE_FIREWALL_PROFILE", profile)
    assert firewall.main([]) == 2
    said = capsys.readouterr().err
    assert f"the profile {profile!r} sends media only to the hybrid node" in said, said
    assert "-f docker-compose.yml -f docker-compose.hybrid.yml" in said, said
    assert firewall.missing_hybrid_node(profile, "hybrid-node") is None
    assert firewall.missing_hybrid_node("open", "") is None
