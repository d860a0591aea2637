"""The one settings layer of every Pinhole command: flags, then ``PINHOLE_*`` variables.

Every flag ``--some-flag`` of every command and subcommand also reads
``PINHOLE_SOME_FLAG``; a flag given on the command line wins.  A bad value
(flag or variable) is a :class:`~edge.boundary.Failure` with exit code 2 that
names it, never argparse's exit or a traceback.  ``--help`` shows each flag's
default and its variable.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, NoReturn

from edge.boundary import usage

PREFIX = "PINHOLE_"
SECRETS = ("secret", "password", "enrollment-key", "token-key")  # --help never shows these
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})


def version() -> str:
    try:
        return metadata.version("pinhole")
    except metadata.PackageNotFoundError:
        return "unknown"


def env_name(action: argparse.Action) -> str | None:
    """``PINHOLE_SOME_FLAG`` for ``--some-flag``; None for positionals, help and version."""
    longs = [s for s in action.option_strings if s.startswith("--")]
    if not longs or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
        return None
    return PREFIX + max(longs, key=len)[2:].upper().replace("-", "_")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each flag's help ends with its default and its ``PINHOLE_*`` variable."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        name = env_name(action)
        if name is None:
            return text
        extra = []
        default = action.default
        if default not in (None, "", False, [], argparse.SUPPRESS) and "default" not in text:
            secret = any(word in s for s in action.option_strings for word in SECRETS)
            extra.append("default: set (hidden)" if secret else f"default: {default}")
        extra.append(f"env {name}")
        # ``text`` is already a %-format string (argparse fills %(default)s …); only what is
        # added here needs escaping, or "±20%%" would show doubled
        return f"{text} ({'; '.join(extra).replace('%', '%%')})"


    def _format_action(self, action: argparse.Action) -> str:
        if isinstance(action, argparse._SubParsersAction) and not action.metavar:
            # the commands, one per line with their one-line help, under their own heading
            return "".join(self._format_action(each) for each in action._get_subactions())
        return super()._format_action(action)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are failures (exit 2, one line, JSON if asked)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        # "argument --seconds: '-1' is out of range …" reads as "--seconds: '-1' is …"
        raise usage(message.removeprefix("argument "), f"'{self.prog} --help' lists the flags")


class CommandLineSecret(argparse.Action):
    """A secret's flag: its value comes from ``PINHOLE_*`` (:func:`apply_environment` makes
    that the default) or from the ``-file`` twin; given on the command line it is refused,
    since ``ps`` shows every process's arguments to every user of the machine."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        flag = option_string or self.option_strings[0]
        name = PREFIX + flag[2:].upper().replace("-", "_")
        raise usage(f"{flag} on the command line is visible to every user in ps",
                    f"put the value in a file (mode 0600) and pass {flag}-file FILE, or set "
                    f"{name}")


def add_secret(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """``--flag`` (environment only, refused on the command line) and ``--flag-file FILE``."""
    parser.add_argument(flag, action=CommandLineSecret, default="",
                        help=f"{help}; never on the command line (ps shows it): set the "
                        "variable, or use " + flag + "-file")
    parser.add_argument(flag + "-file", default="",
                        help=f"a file (mode 0600) holding {help}")


def secret_value(flag: str, value: str, path: str) -> str:
    """The secret from its ``-file`` when given, else ``value`` (from the environment)."""
    if not path:
        return value
    try:
        with open(path, encoding="utf-8") as source:
            return source.read().strip()
    except OSError as exc:
        raise usage(f"cannot read {flag}-file {path}: {exc.strerror}",
                    "check the path and its permissions") from None


@dataclass(frozen=True, slots=True)
class Number:
    """An argparse ``type``: a finite ``kind`` number from ``low`` to ``high`` (``low``
    excluded when ``above``). Bad input is refused at the edge, with the range to give,
    before it reaches a model, a timer or a socket: no NaN, no infinity, no negative
    duration."""

    kind: type[int] | type[float]
    low: float
    high: float
    above: bool = False  # ``low`` itself is refused (a duration that must pass)

    @property
    def __name__(self) -> str:  # argparse names the type in some of its messages
        return self.kind.__name__

    def range(self) -> str:
        noun = "a whole number" if self.kind is int else "a number"
        if self.above:
            return f"{noun} above {self.low:g} and at most {self.high:g}"
        return f"{noun} from {self.low:g} to {self.high:g}"

    def __call__(self, text: str) -> int | float:
        try:
            value: int | float = self.kind(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.range()}") from None
        if not math.isfinite(value) or value < self.low or value > self.high or (
                self.above and value == self.low):
            raise argparse.ArgumentTypeError(f"{text!r} is out of range: give {self.range()}")
        return value


#: the longest any duration flag may ask for (a year): finite, and far below what an
#: asyncio timer or ``time.monotonic()`` arithmetic would overflow on
YEAR_S = 366 * 86400.0


#: a TCP/UDP port; 0 lets the system pick a free one
PORT = Number(int, 0, 65535)


def count(low: int = 1, high: int = 10_000_000) -> Number:
    """A whole number of things (legs, connections, replicas …) from ``low`` to ``high``."""
    return Number(int, low, high)


def seconds(high: float = YEAR_S, *, zero: bool = False, low: float = 0.0) -> Number:
    """A finite duration up to ``high``; 0 only when ``zero`` (it then means "off")."""
    return Number(float, low, high, above=not zero)


def rate(high: float = 1e9) -> Number:
    """A finite, non-negative rate or burst (0 usually meaning "no limit")."""
    return Number(float, 0.0, high)


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")


def subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield sub
                yield from subparsers(sub)


def flags(parser: argparse.ArgumentParser) -> Iterator[tuple[argparse.Action, str]]:
    """Every flag of ``parser`` and its subcommands that reads a variable, with its name."""
    for p in (parser, *subparsers(parser)):
        for action in p._actions:
            name = env_name(action)
            if name is not None and action.default is not argparse.SUPPRESS:
                yield action, name


def _convert(action: argparse.Action, name: str, raw: str) -> object:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        word = raw.strip().lower()
        if word not in TRUE | FALSE:
            raise usage(f"{name}={raw!r} is not a yes/no value", "use 1 or 0 (true/false)")
        given = word in TRUE
        return given if isinstance(action, argparse._StoreTrueAction) else not given
    if isinstance(action, argparse._AppendAction):
        return [part for part in raw.split(",") if part]
    value: object = raw
    if callable(action.type):
        try:
            value = action.type(raw)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
            raise usage(f"{name}={raw!r}: {exc}", "unset it or fix it (see --help)") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise usage(f"{name}={raw!r} is not one of {choices}", "unset it or pick one of those")
    return value


def apply_environment(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Make every flag's default its ``PINHOLE_*`` variable, where that is set."""
    for action, name in flags(parser):
        if name in environ:
            action.default = _convert(action, name, environ[name])
            action.required = False
