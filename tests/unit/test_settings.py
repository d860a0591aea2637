"""Settings from flags: secrets that begin with "-" survive (the lab passes them as --x=VALUE)."""

from __future__ import annotations

from cloud.settings import parse as parse_cloud
from media_node.settings import parse as parse_node


def test_a_secret_starting_with_a_dash_is_a_value() -> None:
    """secrets.token_urlsafe() starts with "-" one time in 64; "--node-secret=-…" keeps it."""
    assert parse_cloud(["--node-secret=-abc"]).node_secret == "-abc"
    node = parse_node(["--cloud", "https://c", "--node-secret=-abc"])
    assert node.node_secret == "-abc"
    assert "-abc" not in str(node.masked())
