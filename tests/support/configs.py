"""Variants of the shipped config/gateway.yaml, for tests that need one key changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import ROOT


def config_variant(
    directory: Path,
    changes: dict[str, Any],
    name: str = "gateway.yaml",
    base: str = "config/gateway.yaml",
) -> str:
    """Write `base` (default config/gateway.yaml) with `changes` merged in
    (nested dicts merge)."""
    doc = yaml.safe_load((ROOT / base).read_text())
    _merge(doc, changes)
    path = directory / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
