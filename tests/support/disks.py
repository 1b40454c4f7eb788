"""A disk that really fills up: a small tmpfs, mounted for one test (needs root)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.webhooks import Poster, with_key


@contextlib.contextmanager
def tiny_tmpfs(where: Path, size: str = "1m") -> Iterator[Path]:
    """Mount a tmpfs of `size` at `where` (skipping the test where mounting is
    not allowed), and unmount it afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def grow(where: Path, size: str) -> None:
    """Give the mounted tmpfs more room: space returns."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)


def padded(body: bytes) -> bytes:
    """The seed event with ~8 KB more: fills a small disk in a few dozen requests."""
    return body.replace(b'"data": {', f'"pad": "{"x" * 8000}", "data": {{'.encode())


def post_until_full(poster: Poster, prefix: str, limit: int = 400) -> int:
    """Post padded events `<prefix>-<i>` until one is refused; check that every
    earlier one got a 200 and the refusal is a 503 naming the store, with
    Retry-After. Returns how many were accepted."""
    for i in range(limit):
        answer = poster.post(padded(with_key(f"{prefix}-{i}")))
        if answer.status == 503:
            assert answer.json()["error"] == "store_unavailable"
            assert answer.headers["retry-after"]
            return i
        assert answer.status == 200, answer
    raise AssertionError(f"still accepting after {limit} padded events: it never filled")
