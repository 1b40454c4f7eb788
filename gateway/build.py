"""Which build is running: the mypyc-compiled one (the container image's, GATEWAY_MYPYC=1
in setup.py) or the interpreted one (an editable or pure-Python install)."""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES
from importlib.util import find_spec


def kind() -> str:
    """ "mypyc" when the ingest path loads from a compiled extension, else
    "interpreted". One module stands for the list: mypyc-modules.txt is compiled as one
    group, all of it or none. Found, not imported: the CLI asks before the public port
    listens (gateway.listeners), and importing gateway.protocol pulls in asyncio."""
    spec = find_spec("gateway.protocol")
    origin = (spec.origin if spec is not None else None) or ""
    return "mypyc" if origin.endswith(tuple(EXTENSION_SUFFIXES)) else "interpreted"
