"""The one compiled module, optional: the media node's UDP data plane (media_node/_plane.c).

As aiohttp, yarl and msgpack build their speedups: when the build fails (no C
compiler, no Python headers) the install goes on without it, and the node runs
its Python twin (media_node/python_plane.py); ``PINHOLE_NO_EXTENSIONS=1`` skips
the build. Everything else is in pyproject.toml.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError, PlatformError

NO_EXTENSIONS = os.environ.get("PINHOLE_NO_EXTENSIONS", "").strip() not in ("", "0")
BUILD_FAILURES = (CCompilerError, CompileError, ExecError, LinkError, PlatformError, OSError)


def _warn(exc: BaseException) -> None:
    print("*" * 75, file=sys.stderr)
    print("WARNING: the compiled data plane (media_node/_plane.c) could not be built:",
          file=sys.stderr)
    print(f"  {type(exc).__name__}: {exc}", file=sys.stderr)
    print("Pinhole is installed without it: the media node relays on its Python plane",
          file=sys.stderr)
    print("(slower). To build it, install a C compiler and Python's headers (e.g.",
          file=sys.stderr)
    print("apt-get install gcc libpython3-dev) and install again.", file=sys.stderr)
    print("*" * 75, file=sys.stderr)


class OptionalBuildExt(build_ext):
    """build_ext whose failure is a warning, not a failed install."""

    def run(self) -> None:
        try:
            super().run()
        except BUILD_FAILURES as exc:
            _warn(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except BUILD_FAILURES as exc:
            _warn(exc)


setup(
    ext_modules=[] if NO_EXTENSIONS else [
        Extension("media_node._plane", ["media_node/_plane.c"],
                  extra_compile_args=["-Wall", "-Wextra", "-Wno-unused-parameter"])],
    cmdclass={"build_ext": OptionalBuildExt},
)
