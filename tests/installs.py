"""Pinhole installed as a user installs it: ``pip install`` of a checkout into a fresh venv.

The venv reads the test environment's installed dependencies through a plain path entry
(not a site directory, so the test environment's own editable install of Pinhole is not
seen); pip builds Pinhole in its own isolated environment, with pyproject.toml's build
requirements, as any install does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("wire", "edge", "cloud", "client", "media_node", "hybrid_node", "lab")
#: what a source tree has that a clean checkout has not
NOT_SOURCE = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc", "*.egg-info", "build")


def source_tree(into: Path) -> Path:
    """The project's files as a checkout has them (no compiled plane, no build)."""
    into.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, into / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, into / package, ignore=NOT_SOURCE)
    return into


class FreshVenv:
    """A new venv at ``where`` whose only Pinhole is the one :meth:`install` puts there."""

    def __init__(self, where: Path) -> None:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)],
                       check=True, timeout=120)
        self.bin = where / "bin"
        self.python = self.bin / "python"
        self.site = Path(subprocess.run(
            [str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True, timeout=60).stdout.strip())
        (self.site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    def install(self, source: Path, env: Mapping[str, str], cwd: Path
                ) -> subprocess.CompletedProcess[str]:
        """``pip install --no-deps source`` into this venv (verbose: the build says why)."""
        return subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(self.python), "install", "--verbose",
             "--no-deps", str(source)],
            capture_output=True, text=True, timeout=600, env=dict(env), cwd=cwd)
