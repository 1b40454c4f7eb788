"""The spool's files under data_dir, one per worker (gateway/spool.py is the spool).

Worker 0 keeps the single process's file, so a switch from `workers: 1` to N
still drains it; worker i has its own. A file of a worker index the current
`workers` no longer runs is drained by nobody: it is named at start.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import structlog

from gateway.config import MAX_WORKERS, Config
from gateway.store import sqlite_path

log = structlog.get_logger("gateway.spool")

SPOOL_FILE = "spool.db"  # under data_dir


def spool_file(worker: int | None) -> str:
    """The spool's file name under data_dir: worker 0 keeps the single process's
    (a switch from workers: 1 to N still drains it), worker i has spool-w<i>.db."""
    return SPOOL_FILE if not worker else f"spool-w{worker}.db"


def spool_on(config: Config) -> bool:
    """The gateway spools: a Redis store with store.spool.enabled (a SQLite store
    is on disk already and never spools; gateway.service)."""
    return config.store.spool.enabled and sqlite_path(config.store.url) is None


def warn_of_stranded_spools(config: Config) -> None:
    """With the spool on, log the spool files of workers beyond `workers` (left by a
    run with more of them) that still hold undelivered events: no running worker
    drains them."""
    if not spool_on(config):
        return
    for index in range(max(config.workers, 1), MAX_WORKERS + 1):
        path = Path(config.data_dir) / spool_file(index)
        if not path.exists():
            continue
        try:
            with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
                events = int(db.execute("SELECT COUNT(*) FROM queue").fetchone()[0])
        except sqlite3.Error as exc:
            log.warning("spool_unreadable", spool=str(path), error=str(exc))
            continue
        if events:
            detail = f"left by worker {index}: run with workers >= {index + 1} to deliver them"
            log.warning("spool_not_drained", spool=str(path), events=events, detail=detail)
