"""The `store` section of the config: where events are kept (Redis or the embedded
SQLite file), for how long keys are remembered, and the Redis-outage spool.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from gateway.config_fields import (
    Section,
    read_bool,
    read_duration,
    read_int,
    read_size,
    read_text,
    redact_url,
    show,
)
from gateway.config_targets import UNSAFE
from gateway.errors import ConfigError
from gateway.store import sqlite_path

_KEY_PREFIX: Final = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_STORE_KEYS: Final = (
    *("url", "dedup_ttl", "admit_deadline", "partitions", "key_prefix", "pool_size"),
    *("socket_timeout", "connect_timeout", "spool", "wait_replicas", "wait_timeout"),
)


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    """The local spool that acks while Redis is unavailable (gateway/spool.py)."""

    enabled: bool
    max_size: int  # bytes of the spool file; a full spool answers 503
    wait_for_redis: float  # an admit not done by Redis within this goes to the spool


@dataclass(frozen=True, slots=True)
class StoreConfig:
    url: str
    dedup_ttl: float
    admit_deadline: float
    partitions: int
    key_prefix: str
    pool_size: int
    socket_timeout: float
    connect_timeout: float
    spool: SpoolConfig = SpoolConfig(enabled=False, max_size=0, wait_for_redis=0.0)
    wait_replicas: int = 0  # replicas that must have an admit before its 200 (Redis WAIT)
    wait_timeout: float = 0.1


def read_store(node: object) -> StoreConfig:
    s = Section(node, "store", _STORE_KEYS)
    url = read_text(s, "url", "redis://127.0.0.1:6379/0")
    if not _is_store_url(url):
        hint = "use redis://host:port/db, rediss://, unix:///path/to/socket or sqlite:///file.db"
        raise ConfigError("store.url", f"not a store URL: {show(redact_url(url))} ({hint})")
    key_prefix = read_text(s, "key_prefix", "gw")
    if not _KEY_PREFIX.fullmatch(key_prefix):
        problem = f"expected 1-32 of A-Z a-z 0-9 _ . -, got {show(key_prefix)}"
        raise ConfigError("store.key_prefix", problem)
    admit_deadline = read_duration(s, "admit_deadline", "2s")
    return StoreConfig(
        url=url,
        dedup_ttl=read_duration(s, "dedup_ttl", "24h"),
        admit_deadline=admit_deadline,
        partitions=read_int(s, "partitions", 1, 1, 1024),
        key_prefix=key_prefix,
        pool_size=read_int(s, "pool_size", 32, 1),
        socket_timeout=read_duration(s, "socket_timeout", "1s"),
        connect_timeout=read_duration(s, "connect_timeout", "1s"),
        spool=_spool(s.get("spool", None), admit_deadline),
        wait_replicas=read_int(s, "wait_replicas", 0, 0, 16),
        wait_timeout=_wait_timeout(s, admit_deadline),
    )


def _wait_timeout(s: Section, admit_deadline: float) -> float:
    timeout = read_duration(s, "wait_timeout", "100ms")
    if timeout >= admit_deadline:
        problem = f"must be shorter than store.admit_deadline ({admit_deadline:g}s)"
        raise ConfigError("store.wait_timeout", problem)
    return timeout


def _spool(node: object, admit_deadline: float) -> SpoolConfig:
    s = Section(node, "store.spool", ("enabled", "max_size", "wait_for_redis"))
    wait = read_duration(s, "wait_for_redis", "500ms")
    if wait >= admit_deadline:
        # The spool's own write needs the rest of the deadline.
        problem = f"must be shorter than store.admit_deadline ({admit_deadline:g}s)"
        raise ConfigError("store.spool.wait_for_redis", problem)
    return SpoolConfig(
        enabled=read_bool(s, "enabled", True),
        max_size=read_size(s, "max_size", "256MiB"),
        wait_for_redis=wait,
    )


def _is_store_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # evaluated for its ValueError on a bad port
    except ValueError:
        return False
    if UNSAFE.search(url):
        return False
    if parts.scheme == "unix":
        return parts.path.startswith("/")
    if parts.scheme == "sqlite":  # sqlite:///relative/file.db or sqlite:////abs/file.db
        return sqlite_path(url) is not None
    db_ok = re.fullmatch(r"/?|/[0-9]+", parts.path) is not None
    return parts.scheme in ("redis", "rediss") and bool(parts.hostname) and db_ok
