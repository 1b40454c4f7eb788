"""Which build is running: the mypyc-compiled one (the container image's, GATEWAY_MYPYC=1
in setup.py) or the interpreted one (an editable or pure-Python install)."""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES

import gateway.protocol


def kind() -> str:
    """ "mypyc" when the ingest path was loaded from a compiled extension, else
    "interpreted". One module stands for the list: mypyc-modules.txt is compiled as one
    group, all of it or none."""
    origin = gateway.protocol.__file__ or ""
    return "mypyc" if origin.endswith(tuple(EXTENSION_SUFFIXES)) else "interpreted"
