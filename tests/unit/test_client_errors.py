"""The client library has one exception root, ``ClientError``, its tree drawn whole.

Defect: the client raised ``ApiError``, ``MediaError``, ``ProxyError`` and
``PinsError``, four unrelated ``Exception``/``ValueError`` subclasses: an app
embedding the library could not catch "anything the client raised" without
naming each. Now each derives from ``client.errors.ClientError`` and
``client/errors.py`` draws the tree, as ``wire/errors.py`` does.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import client
from client import errors
from client.errors import ClientError


def _client_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.iter_modules(client.__path__):
        if info.name == "__main__":
            continue
        module = importlib.import_module(f"client.{info.name}")
        found |= {c.__name__: c for _, c in inspect.getmembers(module, inspect.isclass)
                  if issubclass(c, BaseException) and c.__module__ == module.__name__}
    return found


def test_every_client_error_derives_from_the_root() -> None:
    strays = {n for n, c in _client_exceptions().items() if not issubclass(c, ClientError)}
    assert strays == set(), f"client exceptions outside ClientError: {sorted(strays)}"


def test_the_tree_names_every_client_error() -> None:
    drawn = errors.__doc__ or ""
    missing = {n for n in _client_exceptions() if f" {n} " not in drawn}
    assert missing == set(), f"client/errors.py's tree misses {sorted(missing)}"


@pytest.mark.parametrize(("module", "name"), [
    ("client.api", "ApiError"), ("client.api", "InspectionError"), ("client.api", "PinError"),
    ("client.media", "MediaError"), ("client.proxy", "ProxyError"),
    ("client.pins", "PinsError"), ("client", "ClientError"),
])
def test_the_old_names_still_import(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_a_bad_pin_is_still_a_value_error() -> None:
    assert issubclass(errors.PinsError, ValueError)
