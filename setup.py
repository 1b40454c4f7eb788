"""The package is declared in pyproject.toml; this file only adds the compiled build.

GATEWAY_MYPYC=1 makes a wheel whose modules of mypyc-modules.txt are compiled with mypyc
(the container image's build; README "mypyc"): about a sixth less CPU per request. It
needs a C compiler and the Python headers; build_support/backend.py adds mypy to the build
requirements for it. Without it, the wheel is pure Python and needs neither.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

MODULE_LIST = Path(__file__).resolve().parent / "mypyc-modules.txt"


def compiled_modules() -> list[str]:
    lines = MODULE_LIST.read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def extensions() -> list[object]:
    if os.environ.get("GATEWAY_MYPYC", "0") != "1":
        return []
    from mypyc.build import mypycify  # only when compiling: a build requirement then

    # One shared library named after the package instead of a hash of the module names;
    # -O3 as mypyc's default, and no debug info (-g0): smaller, same speed.
    return mypycify(compiled_modules(), opt_level="3", debug_level="0", group_name="gateway")


setup(ext_modules=extensions())
