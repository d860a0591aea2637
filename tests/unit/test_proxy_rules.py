"""Proxy configuration without a network: URLs, environment, PAC answers, WPAD candidates."""

from __future__ import annotations

import pytest

from client.proxy import (
    ProxyConfig,
    proxy_from_environment,
    proxy_from_pac,
    wpad_candidates,
)

PAC = """function FindProxyForURL(url, host) {
  if (dnsDomainIs(host, ".corp.example")) return "DIRECT";
  return "PROXY proxy.corp.example:8080; DIRECT";
}"""


def test_proxy_url_parsing_and_masked_repr() -> None:
    config = ProxyConfig.from_url("http://alice:p%40ss@proxy.example:8080")
    assert (config.host, config.port, config.username, config.password) == (
        "proxy.example", 8080, "alice", "p@ss")
    assert "p@ss" not in repr(config)


def test_environment_and_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example,.lab")
    assert proxy_from_environment("cloud.example") == ProxyConfig("proxy.example", 3128)
    assert proxy_from_environment("internal.example") is None
    assert proxy_from_environment("node.lab") is None


def test_pac_answers() -> None:
    """PAC's FindProxyForURL: the first PROXY wins; DIRECT means no proxy."""
    assert proxy_from_pac(PAC, "https://cloud.example/", "cloud.example") == ProxyConfig(
        "proxy.corp.example", 8080)
    assert proxy_from_pac(PAC, "https://a.corp.example/", "a.corp.example") is None
    with_creds = proxy_from_pac(PAC, "https://x/", "x", ("u", "p"))
    assert with_creds is not None and with_creds.username == "u"


def test_wpad_candidates_walk_up_the_domain() -> None:
    assert wpad_candidates("laptop.eng.corp.example") == [
        "http://wpad.eng.corp.example/wpad.dat", "http://wpad.corp.example/wpad.dat"]
    assert wpad_candidates("localhost") == []
