"""The spool's file per worker, and the start-up warning about files no worker drains."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.config import Config, load
from gateway.spool_files import spool_file, warn_of_stranded_spools

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "gateway.yaml"


def config(data_dir: Path, workers: int, spool: bool = True, url: str = "") -> Config:
    base = load(str(SHIPPED), {})
    store = replace(base.store, spool=replace(base.store.spool, enabled=spool))
    store = replace(store, url=url) if url else store
    return replace(base, data_dir=str(data_dir), workers=workers, store=store)


def spool_with(path: Path, events: int) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE queue (id INTEGER PRIMARY KEY)")
        db.executemany("INSERT INTO queue DEFAULT VALUES", [()] * events)


def test_worker_0_keeps_the_single_process_file_and_worker_i_has_its_own() -> None:
    assert spool_file(None) == spool_file(0) == "spool.db"
    assert spool_file(3) == "spool-w3.db"


def test_only_the_file_of_a_worker_no_longer_run_that_holds_events_is_named(
    tmp_path: Path,
) -> None:
    spool_with(tmp_path / spool_file(1), 4)  # worker 1 runs: it drains its own
    spool_with(tmp_path / spool_file(2), 3)
    spool_with(tmp_path / spool_file(3), 0)  # empty: nothing stranded
    with capture_logs() as logs:
        warn_of_stranded_spools(config(tmp_path, workers=2))
    assert [(log["event"], log["spool"], log["events"]) for log in logs] == [
        ("spool_not_drained", str(tmp_path / "spool-w2.db"), 3)
    ]
    assert "workers >= 3" in logs[0]["detail"]


@pytest.mark.parametrize(
    ("spool", "url"),
    [(False, ""), (True, "sqlite:///data/gateway.db")],
    ids=["spool_disabled", "sqlite_store"],
)
def test_without_the_spool_no_file_is_scanned(tmp_path: Path, spool: bool, url: str) -> None:
    spool_with(tmp_path / spool_file(2), 3)
    with capture_logs() as logs:
        warn_of_stranded_spools(config(tmp_path, workers=1, spool=spool, url=url))
    assert logs == []
