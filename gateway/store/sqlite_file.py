"""The embedded store's file: how it is opened (WAL, every commit fsynced, a
size cap), how full it is, and which settings or placement put events at risk.

Synchronous, like gateway/store/sqlite_tables.py: the store's thread calls it.
"""

from __future__ import annotations

import os
import sqlite3

from gateway.errors import StoreUnavailable
from gateway.store.sqlite_tables import SCHEMA

_BUSY_TIMEOUT_MS = 5000  # another process (a CLI) holding the write lock
_HEADROOM_PAGES = 64  # above a capped store's admit limit, for its bookkeeping


def connect(path: str, max_bytes: int) -> sqlite3.Connection:
    """The file opened with the tables created, every commit on disk before
    it returns, and (max_bytes > 0) capped; see check_room."""
    db = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        # FULL, not NORMAL: in WAL mode NORMAL survives a process crash but
        # a power cut can lose the last commits. A 200 (and an ack) promises
        # the event is on disk, so every commit fsyncs the WAL.
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        db.executescript(SCHEMA)
        if max_bytes:
            _cap(db, max_bytes)
    except BaseException:
        db.close()
        raise
    return db


def _cap(db: sqlite3.Connection, max_bytes: int) -> None:
    # Admits stop at max_bytes (check_room); the file's hard cap sits a
    # quarter above, so that claiming, retrying and acking (which grow
    # indexes) still work in a full store and space can come back. Past the
    # hard cap a write fails with SQLITE_FULL, as on a full disk: a 503,
    # never an ack.
    page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
    hard = max_bytes * 5 // 4 // page_size + _HEADROOM_PAGES
    db.execute(f"PRAGMA max_page_count={hard}")


def check_room(db: sqlite3.Connection, max_bytes: int) -> None:
    """Refuse an admit once the pages in use reach max_bytes (0: no limit;
    freed pages are reused, so they do not count)."""
    if not max_bytes:
        return
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    size = db.execute("PRAGMA page_size").fetchone()[0]
    used = (int(pages) - int(free)) * int(size)
    if used >= max_bytes:
        raise StoreUnavailable(f"full: {used} bytes in use of max_size {max_bytes}")


def durability_settings(db: sqlite3.Connection, path: str) -> tuple[str, int, str]:
    """The journal mode, the synchronous level and the filesystem type in use."""
    mode = str(db.execute("PRAGMA journal_mode").fetchone()[0])
    sync = int(db.execute("PRAGMA synchronous").fetchone()[0])
    return mode, sync, filesystem_type(path)


def durability_problems(path: str, mode: str, sync: int, fstype: str) -> list[str]:
    """What in durability_settings puts dedup markers or queued events at risk."""
    problems = []
    if mode.lower() != "wal":
        problems.append(f"journal_mode is {mode}, not wal: the filesystem refused WAL")
    if sync < 2:
        problems.append(f"synchronous is {sync}, not FULL (2): a power cut can lose acks")
    if fstype in {"tmpfs", "ramfs"}:
        problems.append(
            f"{path} is on {fstype}: a pod or node restart loses every queued "
            "event; put it on a persistent volume"
        )
    return problems


def filesystem_type(path: str) -> str:
    """The type of the filesystem holding `path` (from /proc/mounts), or ""."""
    if path == ":memory:" or path.startswith("file::memory:"):
        return "ramfs"
    where = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    best, fstype = "", ""
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = where == point or where.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, fstype = point, fields[2]
    except OSError:
        return ""
    return fstype
