"""setuptools' build backend, plus mypy as a build requirement when GATEWAY_MYPYC=1 asks
for a compiled wheel (setup.py), so the interpreted build downloads nothing more.

Editable installs stay interpreted whatever GATEWAY_MYPYC says: setuptools would put the
compiled .so files beside the sources, where they would shadow every later edit.
`./dev.sh compiled-copy DIR` compiles a throwaway copy for tests and measurements instead.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from setuptools import build_meta
from setuptools.build_meta import (  # noqa: F401  the rest of the interface, unchanged
    build_sdist,
    get_requires_for_build_sdist,
)

# The mypy the compiled build is made and tested with (the test extra's, `./dev.sh
# test-compiled`): mypyc's output changes between releases.
MYPY = "mypy>=2.4,<2.5"
STUBS = "types-PyYAML"

ConfigSettings = dict[str, Any] | None


def _compiling() -> bool:
    return os.environ.get("GATEWAY_MYPYC", "0") == "1"


def get_requires_for_build_wheel(config_settings: ConfigSettings = None) -> list[str]:
    if _compiling():
        # mypy, and what it reads the gateway's types from: the runtime dependencies (an
        # import it cannot find is an error under strict, and an Any where mypyc would
        # have generated typed code) and PyYAML's stubs, as the tests' mypy sees them.
        # Not setuptools' own answer, which runs setup.py, and that imports mypyc.
        return [MYPY, *_project()["dependencies"], STUBS]
    return build_meta.get_requires_for_build_wheel(config_settings)


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: ConfigSettings = None
) -> str:
    # The metadata is the same either way: without the switch, setup.py does not run
    # mypyc (its analysis, about 20 s) for metadata only.
    with _interpreted():
        return build_meta.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def build_wheel(
    wheel_directory: str,
    config_settings: ConfigSettings = None,
    metadata_directory: str | None = None,
) -> str:
    return build_meta.build_wheel(wheel_directory, config_settings, metadata_directory)


def get_requires_for_build_editable(config_settings: ConfigSettings = None) -> list[str]:
    with _interpreted():
        return build_meta.get_requires_for_build_editable(config_settings)


def prepare_metadata_for_build_editable(
    metadata_directory: str, config_settings: ConfigSettings = None
) -> str:
    with _interpreted():
        return build_meta.prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_editable(
    wheel_directory: str,
    config_settings: ConfigSettings = None,
    metadata_directory: str | None = None,
) -> str:
    if _compiling():
        print(
            "GATEWAY_MYPYC=1 is ignored by editable installs: they stay interpreted "
            "(pip install . builds the compiled wheel)",
            file=sys.stderr,
        )
    with _interpreted():
        return build_meta.build_editable(wheel_directory, config_settings, metadata_directory)


@contextmanager
def _interpreted() -> Iterator[None]:
    switch = os.environ.get("GATEWAY_MYPYC")
    os.environ["GATEWAY_MYPYC"] = "0"
    try:
        yield
    finally:
        if switch is None:
            del os.environ["GATEWAY_MYPYC"]
        else:
            os.environ["GATEWAY_MYPYC"] = switch


def _project() -> dict[str, Any]:
    with open(Path(__file__).resolve().parent.parent / "pyproject.toml", "rb") as file:
        return dict(tomllib.load(file)["project"])
