"""Each package's exception tree is drawn in its errors module's docstring, whole.

Defect: ``wire/errors.py`` drew its tree without ``PinMismatch`` (a ``WireError``
that ``wire/leg_client.py`` raises), so a reader of the tree never learnt of it.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import cloud
import wire
from cloud import errors as cloud_errors
from cloud.errors import CloudError
from wire import errors as wire_errors
from wire.errors import WireError

TREES = [(wire, wire_errors, WireError), (cloud, cloud_errors, CloudError)]


def _subclasses(package: ModuleType, root: type[Exception]) -> set[str]:
    found: set[str] = set()
    for info in pkgutil.iter_modules(package.__path__):
        if info.name == "__main__":
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        found |= {c.__name__ for _, c in inspect.getmembers(module, inspect.isclass)
                  if issubclass(c, root) and c.__module__ == module.__name__}
    return found


@pytest.mark.parametrize(("package", "module", "root"), TREES,
                         ids=[p.__name__ for p, _, _ in TREES])
def test_the_tree_names_every_error(package: ModuleType, module: ModuleType,
                                    root: type[Exception]) -> None:
    drawn = module.__doc__ or ""
    missing = {n for n in _subclasses(package, root) if f" {n} " not in drawn}
    assert missing == set(), f"{module.__name__}'s tree misses {sorted(missing)}"
