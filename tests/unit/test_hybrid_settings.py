"""``pinhole-hybrid-node`` settings: its flags, each also from ``PINHOLE_*``."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.boundary import Failure
from hybrid_node.settings import parse, parse_ports


def secret(tmp_path: Path) -> str:
    path = tmp_path / "hybrid-secret"
    path.write_text("s3cret\n")
    return str(path)


def test_flags(tmp_path: Path) -> None:
    s = parse(["--cloud", "https://cloud.example", "--org", "acme", "--node-secret-file",
               secret(tmp_path), "--advertise", "10.99.0.4", "--capacity", "2",
               "--cascade-ports", "8000-8100", "--log-format", "json",
               "--metrics-listen", "10.99.0.4:9100"])
    assert (s.kind, s.org, s.node_secret, s.advertise, s.capacity) == (
        "hybrid", "acme", "s3cret", "10.99.0.4", 2)
    assert s.cascade_ports == range(8000, 8101) and s.log_format == "json"
    assert s.metrics_listen == "10.99.0.4:9100" and s.region == "on-prem"
    assert s.masked()["node_secret"] == "****"


def test_every_flag_also_from_the_environment(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"CLOUD": "https://cloud.example", "ORG": "acme",
                        "NODE_SECRET_FILE": secret(tmp_path), "ADVERTISE": "10.99.0.4",
                        "CAPACITY": "3", "CASCADE_PORTS": "33434-33440",
                        "LOG_FORMAT": "json"}.items():
        monkeypatch.setenv("PINHOLE_" + name, value)
    s = parse([])
    assert (s.org, s.capacity, s.cascade_ports, s.log_format) == (
        "acme", 3, range(33434, 33441), "json")


def test_default_cascade_range_is_the_seeds() -> None:
    """Requirements page: hybrid services' media "33434-33598"."""
    assert parse_ports("33434-33598") == range(33434, 33599)
    assert parse_ports("5004") == range(5004, 5005)


@pytest.mark.parametrize(("argv", "message"), [
    (["--cascade-ports", "9-1"], "ports must be 1-65535"),
    (["--cascade-ports", "lots"], "is not a port range"),
    ([], "--org ORG is required"),
])
def test_bad_flags_say_what_to_do(tmp_path: Path, argv: list[str], message: str) -> None:
    base = ["--cloud", "https://cloud.example", "--node-secret-file", secret(tmp_path)]
    if "--org" not in " ".join(argv) and argv:
        base += ["--org", "acme"]
    with pytest.raises(Failure, match=message):
        parse(base + argv)


def test_the_secret_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PINHOLE_NODE_SECRET", raising=False)
    with pytest.raises(Failure, match="hybrid node secret is missing"):
        parse(["--cloud", "https://cloud.example", "--org", "acme"])


def test_cluster_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clusters: "pinhole-hybrid-node --cluster NAME (org-scoped)"; overflow by delay
    "configurable per cluster", from a flag or ``PINHOLE_*`` like every other."""
    base = ["--cloud", "https://cloud.example", "--org", "acme", "--node-secret-file",
            secret(tmp_path)]
    s = parse([*base, "--cluster", "hq-floor.2", "--overflow-rtt-ms", "120"])
    assert (s.cluster, s.overflow_rtt_ms) == ("hq-floor.2", 120.0)
    default = parse(base)
    assert (default.cluster, default.overflow_rtt_ms) == ("", 250.0)  # a cluster of its own
    monkeypatch.setenv("PINHOLE_CLUSTER", "branch")
    monkeypatch.setenv("PINHOLE_OVERFLOW_RTT_MS", "80.5")
    s = parse(base)
    assert (s.cluster, s.overflow_rtt_ms) == ("branch", 80.5)


@pytest.mark.parametrize(("argv", "message"), [
    (["--cluster", "head office"], "is not a cluster name"),
    (["--cluster", "x" * 65], "is not a cluster name"),
    (["--overflow-rtt-ms", "0"], "above 0"),
    (["--overflow-rtt-ms", "nan"], "overflow-rtt-ms"),
])
def test_bad_cluster_flags_say_what_to_do(tmp_path: Path, argv: list[str],
                                          message: str) -> None:
    """Refused at the flag, before the cloud would refuse the registration."""
    with pytest.raises(Failure, match=message):
        parse(["--cloud", "https://cloud.example", "--org", "acme", "--node-secret-file",
               secret(tmp_path), *argv])


def test_the_proxy_for_the_nodes_signalling(tmp_path: Path) -> None:
    """Need: "Behind an explicit HTTP proxy: the hybrid node's signalling to the cloud
    through the enterprise proxy": ``--proxy`` (or PINHOLE_PROXY) is the client's proxy
    URL; its password never reaches the start-up log; a bad URL is a usage error."""
    base = ["--cloud", "https://cloud.example", "--org", "acme", "--node-secret-file",
            secret(tmp_path)]
    assert parse(base).proxy is None  # direct by default
    s = parse([*base, "--proxy", "http://ops:pr0xy-pw@10.99.0.3:8888"])
    assert s.proxy is not None
    assert (s.proxy.host, s.proxy.port, s.proxy.username, s.proxy.password) == (
        "10.99.0.3", 8888, "ops", "pr0xy-pw")
    assert "pr0xy-pw" not in str(s.masked())
    with pytest.raises(Failure, match=r"--proxy: .*use http://") as bad:
        parse([*base, "--proxy", "socks5://10.99.0.3:1080"])
    assert bad.value.exit_code == 2
