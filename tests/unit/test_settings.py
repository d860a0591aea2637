"""Settings from flags and the environment: secrets never from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.settings import parse as parse_cloud
from edge.boundary import ExitCode, Failure
from media_node.settings import parse as parse_node


def test_a_secret_on_the_command_line_is_refused() -> None:
    """Defect: "--node-secret=..." was visible in ps for the cloud and every node. A value on
    argv is a usage failure (exit 2) saying what to do instead; the secret is not echoed."""
    for parse, argv in ((parse_cloud, ["--node-secret=s3cr3t-value"]),
                        (parse_cloud, ["--operator-token", "s3cr3t-value"]),
                        (parse_cloud, ["--token-key", "s3cr3t-value"]),
                        (parse_node, ["--cloud", "https://c", "--node-secret=s3cr3t-value"])):
        with pytest.raises(Failure) as caught:
            parse(argv)
        failure = caught.value
        assert failure.exit_code == ExitCode.USAGE
        assert "visible to every user in ps" in failure.message and "-file FILE" in failure.hint
        assert "s3cr3t-value" not in failure.line("x")


def test_secrets_come_from_files_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret may start with "-" (secrets.token_urlsafe() does one time in 64)."""
    secret = tmp_path / "node-secret"
    secret.write_text("-abc\n")
    token = tmp_path / "operator-token"
    token.write_text("op-token")
    cloud = parse_cloud(["--node-secret-file", str(secret), "--operator-token-file", str(token)])
    assert (cloud.node_secret, cloud.operator_token) == ("-abc", "op-token")
    assert "-abc" not in str(cloud.masked()) and "op-token" not in str(cloud.masked())
    node = parse_node(["--cloud", "https://c", "--node-secret-file", str(secret)])
    assert node.node_secret == "-abc" and "-abc" not in str(node.masked())
    monkeypatch.setenv("PINHOLE_NODE_SECRET", "from-env")
    monkeypatch.setenv("PINHOLE_OPERATOR_TOKEN", "op-env")
    assert parse_node(["--cloud", "https://c"]).node_secret == "from-env"
    assert parse_cloud([]).operator_token == "op-env"
    monkeypatch.setenv("PINHOLE_NODE_SECRET_FILE", str(secret))
    assert parse_node(["--cloud", "https://c"]).node_secret == "-abc"
