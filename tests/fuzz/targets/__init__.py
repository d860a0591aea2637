"""Fuzz targets: one function per parser or boundary, ``bytes`` in, nothing out.

Each target feeds its input to a parser the network or a client reaches and
checks the parser's contract: it returns, or raises only its documented
error (a ``WireError`` subclass, pydantic's ``ValidationError``). Anything
else (``IndexError``, ``RecursionError``, ``UnicodeEncodeError`` ...) escapes
and is a crash. Where a parser has a property beyond "does not crash", the
target asserts it too (answers at most twice the request; frames re-encode
to the bytes they came from; SRTP round trips).

Each target is the function of its name in the module of its name here
(``tests/fuzz/targets/stun.py`` ...), which imports only the parser it feeds. This
registry imports none of them, nor anything of Pinhole: a module is imported when its
target is first looked up in :data:`TARGETS`. So the process that fuzzes one target
imports only that target's parser, under atheris's import hook, which instruments the
target's :data:`PACKAGES` (instrumenting and importing every parser for each target made
the suite's short run of them cost 2 s of CPU a target, nearly all of it before the first
input).

Used by the long, coverage-guided run (``tests/fuzz/__main__.py``, atheris)
and by the replay of the saved corpus and of past crashes in the test suite.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Final, cast

Target = Callable[[bytes], None]

PWD: Final = b"fuzz+pwd+0123456789abc"

#: The Pinhole packages each target's parse runs in, and the ones the models it validates
#: come from: its process instruments them (and no others) for libFuzzer's coverage. A
#: target that parses in the client's code instruments the client; the relay engine's
#: targets do not instrument ``edge``, which ``media_node`` imports only for its settings.
#: The suite checks that every Pinhole function a target calls on its corpus is in them
#: (``tests/integration/test_fuzz_smoke.py``).
PACKAGES: Final[dict[str, tuple[str, ...]]] = {
    "stun": ("wire",),
    "framing": ("wire",),
    "rtp": ("wire",),
    "srtp": ("wire",),
    "engine": ("media_node", "wire"),
    "control_from_node": ("cloud", "wire"),
    "control_from_cloud": ("media_node", "wire"),
    "api_body": ("cloud", "wire"),
    "tls": ("wire",),
    "stack_json": ("edge", "wire"),
    "cache_files": ("client", "edge", "wire"),
    "sdp": ("wire",),
    "dtls": ("wire",),
    "webrtc_engine": ("media_node", "wire"),
}


class _Targets(Mapping[str, Target]):
    """Each target by name; looking one up imports its module (and so its parser)."""

    def __getitem__(self, name: str) -> Target:
        if name not in PACKAGES:
            raise KeyError(name)
        return cast(Target, getattr(importlib.import_module(f"{__name__}.{name}"), name))

    def __contains__(self, name: object) -> bool:  # without importing the target's module
        return name in PACKAGES

    def __iter__(self) -> Iterator[str]:
        return iter(PACKAGES)

    def __len__(self) -> int:
        return len(PACKAGES)


TARGETS: Final[Mapping[str, Target]] = _Targets()
