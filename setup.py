"""The one compiled module: the media node's UDP data plane (media_node/_plane.c).

Everything else is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("media_node._plane", ["media_node/_plane.c"],
                             extra_compile_args=["-Wall", "-Wextra", "-Wno-unused-parameter"])])
