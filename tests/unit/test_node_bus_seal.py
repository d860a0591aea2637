"""Sealed pub/sub messages between cloud replicas (HMAC-SHA256, RFC 2104), fake clock."""

from __future__ import annotations

from cloud.node_bus import MAX_AGE_S, bus_key, seal, unseal

KEY = bus_key("the node secret")
CHANNEL = "pinhole:nodecmd:n1"
TEXT = '{"type": "release_leg", "leg_id": "leg-1"}'


def test_a_sealed_message_opens_on_its_channel() -> None:
    assert unseal(KEY, CHANNEL, seal(KEY, CHANNEL, TEXT, 100.0), 101.0) == TEXT


def test_forgeries_do_not_open() -> None:
    """Unsealed, another key, another channel, a changed text, too old: all refused."""
    sealed = seal(KEY, CHANNEL, TEXT, 100.0)
    stamp, mac, _ = sealed.split(" ", 2)
    assert unseal(KEY, CHANNEL, TEXT, 100.0) is None
    assert unseal(KEY, CHANNEL, seal(bus_key("another"), CHANNEL, TEXT, 100.0), 100.0) is None
    assert unseal(KEY, "pinhole:nodecmd:n2", sealed, 100.0) is None
    assert unseal(KEY, CHANNEL, f"{stamp} {mac} {TEXT.replace('leg-1', 'leg-2')}", 100.0) is None
    assert unseal(KEY, CHANNEL, sealed, 100.0 + MAX_AGE_S + 1) is None
    assert unseal(KEY, CHANNEL, "x y z", 100.0) is None and unseal(KEY, CHANNEL, "", 1) is None
