"""Each setting is declared once: a field of its frozen settings class carries its flag.

Defect: every setting of the cloud, the media node, the hybrid node and the client was
written three times (a dataclass field, an ``add_argument`` with ``default=d.x`` and a
``x=a.x`` when building the object), so a default, a type or a flag could drift from its
field; the cloud and the node each had their own five connection-limit settings. Now
``edge.flags.setting`` declares a field and its flag together, ``add_settings`` makes
the flags and ``settings_from`` the object, and ``ConnectionLimits`` is the one
connection-limits type of both services.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from client import cli
from client.cli import ClientSettings
from cloud import settings as cloud_settings
from cloud.settings import CLOUD_LIMITS, CloudSettings
from edge.admission import ConnectionLimits
from edge.boundary import Failure
from edge.flags import (
    MASK,
    Parser,
    add_settings,
    apply_environment,
    declared,
    group,
    masked,
    setting,
    settings_from,
    subparsers,
)
from hybrid_node import settings as hybrid_settings
from hybrid_node.settings import HybridFlags
from media_node import settings as node_settings
from media_node.settings import NODE_LIMITS, NodeSettings

#: each command, its parser, and the settings classes (with that command's defaults)
#: whose flags it takes
COMMANDS: dict[str, tuple[Callable[[], argparse.ArgumentParser],
                          list[tuple[type[Any], object]]]] = {
    "pinhole-media-node": (node_settings.parser, [(NodeSettings, None)]),
    "pinhole-hybrid-node": (hybrid_settings.build_parser,
                            [(NodeSettings, hybrid_settings.DEFAULTS), (HybridFlags, None)]),
    "pinhole-cloud": (cloud_settings.parser, [(CloudSettings, None)]),
    "pinhole": (cli._parser, [(ClientSettings, None)]),
}


def _flags(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """The flags of ``parser`` itself (not --help, --version or its commands')."""
    for action in parser._actions:
        if action.option_strings and not isinstance(
                action, (argparse._HelpAction, argparse._VersionAction)):
            yield action


@pytest.mark.parametrize("command", COMMANDS)
def test_the_parsers_flags_are_the_fields_flags(command: str) -> None:
    """Every field with a flag is exactly one flag, with the field's default, and no flag
    is declared anywhere else."""
    make, classes = COMMANDS[command]
    expected: dict[str, object] = {}
    for cls, defaults in classes:
        for each in declared(cls, defaults):
            for option in each.options:
                assert option not in expected, f"{option} declared twice"
                expected[option] = "" if option.endswith("-file") else each.flag_default
    got: dict[str, object] = {}
    for action in _flags(make()):
        for option in action.option_strings:
            assert option not in got
            got[option] = action.default
    assert got == expected


def test_each_command_of_pinhole_copies_the_global_flags_and_only_those_quietly() -> None:
    options = {o for each in declared(ClientSettings) for o in each.options}
    for sub in subparsers(cli._parser()):
        quiet = {o for action in _flags(sub) if action.default is argparse.SUPPRESS
                 for o in action.option_strings}
        assert quiet == options, sub.prog
        assert all(action.help == argparse.SUPPRESS for action in _flags(sub)
                   if action.default is argparse.SUPPRESS)


@pytest.mark.parametrize(("command", "argv", "computed", "expected"), [
    ("pinhole-media-node", [], {}, NodeSettings()),
    ("pinhole-cloud", [], {}, CloudSettings()),
    ("pinhole-hybrid-node", [], {"kind": "hybrid", "prog": "pinhole-hybrid-node"},
     hybrid_settings.DEFAULTS),
    ("pinhole", ["register"], {}, ClientSettings()),
])
def test_no_flag_gives_the_defaults(command: str, argv: list[str], computed: dict[str, Any],
                                    expected: object) -> None:
    make, classes = COMMANDS[command]
    namespace = make().parse_args(argv)
    assert settings_from(classes[0][0], namespace, **computed) == expected
    for cls, _ in classes[1:]:
        assert settings_from(cls, namespace) == cls()


def test_one_connection_limits_type_with_each_services_defaults() -> None:
    """Before, the node held five fields it turned into a ``StreamLimits`` and the cloud
    five of its own. The flag names, defaults and variables stay each service's."""
    assert isinstance(NodeSettings().limits, ConnectionLimits)
    assert isinstance(CloudSettings().limits, ConnectionLimits)
    assert NodeSettings().limits == NODE_LIMITS == ConnectionLimits()
    assert (CLOUD_LIMITS.max_connections, CLOUD_LIMITS.max_connections_per_source,
            CLOUD_LIMITS.idle_s) == (10000, 2500, 30.0)
    environ = {"PINHOLE_IDLE_S": "12", "PINHOLE_MAX_CONNECTIONS": "7"}
    node, cloud = node_settings.parser(), cloud_settings.parser()
    for parser in (node, cloud):
        apply_environment(parser, environ)
    argv = ["--handshake-s", "0"]  # 0: no limit, for both
    for limits in (settings_from(NodeSettings, node.parse_args(argv)).limits,
                   settings_from(CloudSettings, cloud.parse_args(argv)).limits):
        assert (limits.idle_s, limits.max_connections, limits.handshake_s) == (12.0, 7, 0.0)


def test_the_cloud_has_no_first_message_flag() -> None:
    """The cloud's first request is bounded by ``idle_s`` (aiohttp's keep-alive timer runs
    from accept): the group leaves that flag out, and its value at the cloud's default."""
    options = {o for a in _flags(cloud_settings.parser()) for o in a.option_strings}
    assert "--first-message-s" not in options and "--idle-s" in options
    with pytest.raises(Failure):
        cloud_settings.parse(["--first-message-s", "5"])
    assert cloud_settings.parse([]).limits == CLOUD_LIMITS


def test_a_negated_switch_turns_its_setting_off() -> None:
    parser = node_settings.parser()
    apply_environment(parser, {"PINHOLE_NO_TLS": "1"})
    s = settings_from(NodeSettings, parser.parse_args(["--no-udp"]))
    assert (s.udp, s.tcp, s.tls) == (False, True, False)


def test_secrets_are_masked_and_kept_out_of_repr(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    s = cloud_settings.parse(["--node-secret-file", str(secret)])
    assert s.node_secret == "s3cret" and "s3cret" not in repr(s)
    shown = masked(s)
    assert shown["node_secret"] == MASK and shown["token_key"] == ""  # unset: nothing hidden
    assert shown["limits"] == dataclasses.asdict(CLOUD_LIMITS)  # a group: a nested dict


@dataclasses.dataclass(frozen=True, slots=True)
class Example:
    colour: str = setting("red", "a colour", choices=("red", "blue"), aliases=("--hue",))
    ports: tuple[str, ...] = setting((), "a port, repeatable", flag="--port", many=True)
    limits: ConnectionLimits = group(NODE_LIMITS, omit=("handshake_s",),
                                     help={"idle_s": "idle for this long"})
    computed: int = 0


def test_a_declaration_gives_names_aliases_choices_and_lists() -> None:
    parser = Parser(prog="example")
    add_settings(parser, Example)
    assert "idle for this long" in parser.format_help()
    apply_environment(parser, {"PINHOLE_PORT": "1,2"})
    s = settings_from(Example, parser.parse_args(["--hue", "blue", "--idle-s", "3"]),
                      computed=4)
    assert s == Example(colour="blue", ports=("1", "2"), limits=dataclasses.replace(
        NODE_LIMITS, idle_s=3.0), computed=4)
    with pytest.raises(Failure):
        parser.parse_args(["--colour", "green"])
    with pytest.raises(Failure):
        parser.parse_args(["--handshake-s", "1"])  # omitted from this group


def test_a_bad_declaration_is_refused() -> None:
    with pytest.raises(TypeError, match="needs its help"):
        setting(1, "")
    with pytest.raises(TypeError, match="on by default"):
        setting(False, "do not", negate=True)
    with pytest.raises(TypeError, match="has no colour"):
        group(NODE_LIMITS, omit=("colour",))
