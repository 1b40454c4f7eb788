"""The two builds: interpreted (editable installs, `./dev.sh run`) and mypyc-compiled
(setup.py with GATEWAY_MYPYC=1, the container image). The compiled wheel itself is built
and run by tests/deploy/test_container.py; `./dev.sh test-compiled` runs this file on a
compiled copy."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import tomllib
from importlib.machinery import EXTENSION_SUFFIXES
from types import ModuleType

import pytest

from gateway import build
from tests.support.processes import ROOT


def _load_backend() -> ModuleType:
    """build_support/backend.py, the in-tree build backend (not a package of the project)."""
    spec = importlib.util.spec_from_file_location("backend", ROOT / "build_support" / "backend.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


backend = _load_backend()

COMPILED = [
    line.removesuffix(".py").replace("/", ".")
    for line in (ROOT / "mypyc-modules.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]


def test_every_listed_module_is_loaded_as_the_build_kind_says() -> None:
    """All of mypyc-modules.txt compiled, or none: a compiled class with an interpreted
    subclass, or the reverse, fails at import (README "mypyc")."""
    assert len(COMPILED) > 20
    compiled = build.kind() == "mypyc"
    for name in COMPILED:
        origin = importlib.import_module(name).__file__ or ""
        assert origin.endswith(tuple(EXTENSION_SUFFIXES)) == compiled, (name, origin)


def test_version_names_the_build() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "--version"], capture_output=True, text=True,
        cwd=ROOT, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert out.strip() == f"webhook-gateway 0.1.0 ({build.kind()})"


def test_the_compiled_build_asks_for_the_tested_mypy_and_what_it_reads_types_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """mypyc's output changes between mypy releases: the compiled wheel is built with the
    mypy the test extra installs, which `./dev.sh test-compiled` tests, and with the
    runtime dependencies and stubs in its build environment, as the tests' mypy has."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    test_extra = [r.split("#")[0].strip() for r in project["optional-dependencies"]["test"]]
    monkeypatch.setenv("GATEWAY_MYPYC", "1")
    mypy, *rest = backend.get_requires_for_build_wheel()
    assert mypy in test_extra
    assert mypy.startswith("mypy>=")
    assert rest == [*project["dependencies"], "types-PyYAML"]
    assert "types-PyYAML" in test_extra


def test_the_interpreted_build_asks_for_setuptools_answer_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # setuptools' own answer (it runs setup.py) is the seam: this venv's setuptools may be
    # older than the build's (pyproject's build-system.requires).
    monkeypatch.setattr(backend.build_meta, "get_requires_for_build_wheel", lambda _: ["wheel"])
    for switch in ("0", ""):
        monkeypatch.setenv("GATEWAY_MYPYC", switch)
        assert backend.get_requires_for_build_wheel() == ["wheel"]


@pytest.mark.parametrize(
    "hook",
    ["build_editable", "get_requires_for_build_editable", "prepare_metadata_for_build_editable"],
)
def test_an_editable_install_ignores_the_compile_switch(
    monkeypatch: pytest.MonkeyPatch, hook: str
) -> None:
    """Compiled .so files beside the sources would shadow every later edit; and setup.py
    would import mypyc, which an editable install's build environment lacks."""
    seen: list[str] = []

    def setuptools_hook(*_: object) -> str:
        seen.append(backend.os.environ["GATEWAY_MYPYC"])
        return "answer"

    monkeypatch.setattr(backend.build_meta, hook, setuptools_hook)
    monkeypatch.setenv("GATEWAY_MYPYC", "1")
    assert getattr(backend, hook)("dist") == "answer"
    assert seen == ["0"]
    assert backend.os.environ["GATEWAY_MYPYC"] == "1"
