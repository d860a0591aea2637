"""The one settings layer of every Pinhole command: flags, then ``PINHOLE_*`` variables.

Every flag ``--some-flag`` of every command and subcommand also reads
``PINHOLE_SOME_FLAG``; a flag given on the command line wins.  A bad value
(flag or variable) is a :class:`~edge.boundary.Failure` with exit code 2 that
names it, never argparse's exit or a traceback.  ``--help`` shows each flag's
default and its variable.

A service declares each setting once, as a field of its frozen settings class:
``udp_port: int = setting(5004, "preferred UDP media port", type=PORT)`` carries
the default, the type and the help; :func:`add_settings` makes the flag
(``--udp-port``) and :func:`settings_from` the frozen object from the parsed
flags. A field without :func:`setting` is no flag (the service computes it); a
field made by :func:`group` is a nested settings object whose fields are flags
of the same command (the connection limits of the cloud and the media node).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import math
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Final, NoReturn, TypeVar

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


def add_secret(parser: argparse._ActionsContainer, flag: str, help: str) -> None:
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


# --- settings declared once: a dataclass field carries its flag -----------------------------

T = TypeVar("T")
S = TypeVar("S")
SETTING: Final = "pinhole.setting"  # field metadata: this field is a flag (a Setting)
GROUP: Final = "pinhole.group"  # field metadata: a nested settings object (a Group)
MASK: Final = "****"


class _Missing(enum.Enum):
    MISSING = enum.auto()


Converter = Callable[[str], Any]
EnumType = type[enum.Enum]


@dataclass(frozen=True, slots=True)
class Setting:
    """How one field of a settings class is given on the command line (see :func:`setting`)."""

    help: str
    type: Converter | None = None
    flag: str | None = None  # the flag's name; by default from the field's: udp_port, --udp-port
    aliases: tuple[str, ...] = ()
    choices: tuple[object, ...] | EnumType | None = None
    metavar: str | None = None
    secret: bool = False  # from PINHOLE_* or a --X-file only (add_secret); masked
    masked: bool = False  # a flag like any other, masked in the start-up log
    negate: bool = False  # a default-on switch, turned off by --no-NAME
    many: bool = False  # repeatable (comma-separated in the variable); the field a tuple
    show: Callable[[Any], str] | None = None  # the default as text, which ``type`` parses
    lazy: bool = False  # the default is made when the settings are: the flag's is None

    def option(self, name: str) -> str:
        return self.flag or ("--no-" if self.negate else "--") + name.replace("_", "-")


@dataclass(frozen=True, slots=True)
class Group:
    """A nested settings object of a command (see :func:`group`)."""

    omit: frozenset[str] = frozenset()
    help: Mapping[str, str] = dataclasses.field(default_factory=dict)


def setting(default: T | _Missing = _Missing.MISSING, help: str = "", *,
            factory: Callable[[], T] | None = None, type: Converter | None = None,
            flag: str | None = None, aliases: Collection[str] = (),
            choices: Collection[object] | EnumType | None = None,
            metavar: str | None = None, secret: bool = False, masked: bool = False,
            negate: bool = False, many: bool = False,
            show: Callable[[Any], str] | None = None) -> T:
    """A settings field that is also a flag: its default (or ``factory``), help and type.

    A bool is a switch: ``--name`` turns a default-off one on; ``negate`` makes
    ``--no-name`` turn a default-on one off. ``choices`` may be an ``Enum``: the flag
    takes its values, the field holds its member. ``secret``: :func:`add_secret`'s pair
    of flags. A flag whose parsed value is None leaves the field's default."""
    if not help:
        raise TypeError("a setting needs its help")
    if negate and default is not True:
        raise TypeError("negate is for a setting that is on by default")
    spec = Setting(help, type, flag, tuple(aliases),
                   choices if isinstance(choices, enum.EnumMeta) or choices is None
                   else tuple(choices), metavar, secret, masked or secret, negate, many, show,
                   lazy=factory is not None)
    shown = not spec.masked  # a secret is kept out of repr() too
    if factory is not None:
        field: T = dataclasses.field(default_factory=factory, repr=shown,
                                     metadata={SETTING: spec})
    elif isinstance(default, _Missing):
        raise TypeError("a setting needs a default or a factory")
    else:
        field = dataclasses.field(default=default, repr=shown, metadata={SETTING: spec})
    return field


def group(defaults: T, *, omit: Collection[str] = (), help: Mapping[str, str] | None = None,
          ) -> T:
    """A field holding a nested settings object, ``defaults`` (this service's): each of its
    settings is a flag of the command, but those in ``omit`` (kept at their default);
    ``help`` words some of them for this service."""
    names = {f.name for f in dataclasses.fields(defaults)}  # type: ignore[arg-type]
    unknown = (set(omit) | set(help or {})) - names
    if unknown:
        raise TypeError(f"{type(defaults).__name__} has no {', '.join(sorted(unknown))}")
    spec = Group(frozenset(omit), dict(help or {}))
    field: T = dataclasses.field(default=defaults, metadata={GROUP: spec})
    return field


@dataclass(frozen=True, slots=True)
class Declared:
    """One flag a settings class declares: its field, how it is given, its default."""

    path: tuple[str, ...]  # ("udp_port",), or ("limits", "idle_s") in a group
    spec: Setting
    default: object

    @property
    def option(self) -> str:
        return self.spec.option(self.path[-1])

    @property
    def dest(self) -> str:
        return self.option[2:].replace("-", "_")  # argparse's, from the first long flag

    @property
    def options(self) -> tuple[str, ...]:
        """Every flag name this declares (a secret's ``-file`` twin too)."""
        names = (self.option, *self.spec.aliases)
        return (*names, self.option + "-file") if self.spec.secret else names

    @property
    def flag_default(self) -> object:
        """The default as argparse holds it (a switch's False; a secret's "")."""
        spec, default = self.spec, self.default
        if spec.secret:
            return ""
        if spec.negate or isinstance(default, bool):
            return False
        if spec.many or spec.lazy:
            return None  # (argparse appends to it): the field's default stands
        if isinstance(default, enum.Enum):
            return default.value
        return spec.show(default) if spec.show is not None else default


def _default(field: dataclasses.Field[Any]) -> object:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def declared(cls: type[Any], defaults: object = None) -> Iterator[Declared]:
    """Every flag of ``cls`` (its groups' too), with ``defaults``' value or the field's."""
    for field in dataclasses.fields(cls):
        value = getattr(defaults, field.name) if defaults is not None else _default(field)
        if SETTING in field.metadata:
            yield Declared((field.name,), field.metadata[SETTING], value)
        elif GROUP in field.metadata:
            spec: Group = field.metadata[GROUP]
            for each in declared(type(value), value):
                name = each.path[0]
                if name in spec.omit:
                    continue
                words = spec.help.get(name)
                flag = each.spec if words is None else dataclasses.replace(each.spec, help=words)
                yield Declared((field.name, *each.path), flag, each.default)


def add_settings(parser: argparse._ActionsContainer, cls: type[Any], defaults: object = None,
                 *, copy: bool = False) -> None:
    """One flag for each :func:`setting` of ``cls``, in field order, defaulting to
    ``defaults``' value (the class's when None). ``copy``: a subcommand's copy of flags
    its parent also takes, which only overrides when given and is left out of its help."""
    for each in declared(cls, defaults):
        spec = each.spec
        if spec.secret:
            if copy:
                raise TypeError(f"{each.option}: a secret's flags are not copied")
            add_secret(parser, each.option, spec.help)
            continue
        kwargs: dict[str, Any] = {"dest": each.dest, "help": spec.help,
                                  "default": each.flag_default}
        if spec.negate or isinstance(each.default, bool):
            if each.default is not spec.negate:
                raise TypeError(f"{each.option} cannot change its default to {each.default}")
            kwargs["action"] = "store_true"
        elif spec.many:
            kwargs["action"] = "append"
        else:
            kwargs["type"] = spec.type
            if isinstance(spec.choices, enum.EnumMeta):
                kwargs["choices"] = [member.value for member in spec.choices]
            elif spec.choices is not None:
                kwargs["choices"] = list(spec.choices)
        if spec.metavar is not None:
            kwargs["metavar"] = spec.metavar
        if copy:
            kwargs.update(default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        parser.add_argument(*each.options, **kwargs)


def _parsed(namespace: argparse.Namespace, each: Declared) -> object:
    """The field's value from the parsed flags; ``_Missing`` leaves the field's default."""
    spec, raw = each.spec, getattr(namespace, each.dest, None)
    if spec.secret:
        return secret_value(each.option, raw or "", getattr(namespace, each.dest + "_file", ""))
    if spec.negate:
        return not raw
    if raw is None:
        return _Missing.MISSING
    if spec.many:
        return tuple(raw)
    if isinstance(spec.choices, enum.EnumMeta):
        return spec.choices(raw)
    return raw


def settings_from(cls: type[S], namespace: argparse.Namespace, **computed: Any) -> S:
    """The frozen ``cls`` from flags parsed by a parser :func:`add_settings` made: each
    setting from its flag, each other field from ``computed`` or its default. A secret is
    read from its ``-file`` here (a :func:`~edge.boundary.usage` failure if unreadable)."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name in computed:
            continue
        if SETTING in field.metadata:
            value = _parsed(namespace, Declared((field.name,), field.metadata[SETTING], None))
            if value is not _Missing.MISSING:
                values[field.name] = value
        elif GROUP in field.metadata:
            base = _default(field)
            spec: Group = field.metadata[GROUP]
            nested = {each.path[0]: _parsed(namespace, each) for each in declared(type(base))
                      if each.path[0] not in spec.omit}
            values[field.name] = dataclasses.replace(  # type: ignore[type-var]
                base, **{k: v for k, v in nested.items() if v is not _Missing.MISSING})
    return cls(**values, **computed)


def masked(settings: object) -> dict[str, object]:
    """Every field of a settings object for the start-up log, secrets masked; a group as
    a nested dict."""
    out: dict[str, object] = {}
    for field in dataclasses.fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, field.name)
        spec = field.metadata.get(SETTING)
        if GROUP in field.metadata:
            value = masked(value)
        elif spec is not None and spec.masked and value:
            value = MASK
        out[field.name] = value
    return out
