"""``make venv`` prints no setuptools warning banner (defect: two "Package would be ignored"
banners, for lab/profiles and lab/proxy: directories Python can import as namespace
packages that were absent from ``[tool.setuptools] packages``). setuptools warns for every
importable directory under a listed package that is not listed itself: so must we."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_importable_directory_of_a_package_is_listed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    unlisted = []
    for package in sorted(listed):
        for directory in (ROOT / package.replace(".", "/")).iterdir():
            if (directory.is_dir() and directory.name.isidentifier()
                    and directory.name != "__pycache__"
                    and any(p.is_file() for p in directory.iterdir())):
                name = f"{package}.{directory.name}"
                if name not in listed:
                    unlisted.append(name)
    assert not unlisted


def test_the_lab_data_files_are_still_packaged() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]
    assert data["lab.profiles"] == ["*.nft"] and data["lab.proxy"] == ["*.conf"]
