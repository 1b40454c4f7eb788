"""Load the gateway's one YAML config file into frozen dataclasses.

Validation is complete and eager: every problem becomes a single ConfigError
line naming its key path, so a bad deploy fails at startup instead of at the
first webhook. This module knows the schema (sources, targets and the store have
their own modules, gateway.config_sources, gateway.config_targets and
gateway.config_store); the schema-free readers,
`${VAR}` interpolation and message helpers it builds on live in gateway.config_fields.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from gateway.config_fields import (
    NAME,
    REQUIRED,
    Section,
    interpolate,
    plain,
    read_bool,
    read_choice,
    read_duration,
    read_int,
    read_port,
    read_size,
    read_strings,
    read_text,
    read_yaml,
    show,
)
from gateway.config_fields import parse_duration as parse_duration  # re-exported
from gateway.config_fields import parse_size as parse_size  # re-exported
from gateway.config_sources import SourceConfig as SourceConfig  # re-exported
from gateway.config_sources import read_sources
from gateway.config_store import SpoolConfig as SpoolConfig  # re-exported
from gateway.config_store import StoreConfig as StoreConfig  # re-exported
from gateway.config_store import read_store
from gateway.config_targets import Backoff as Backoff  # re-exported
from gateway.config_targets import TargetConfig as TargetConfig  # re-exported
from gateway.config_targets import read_targets
from gateway.errors import ConfigError
from gateway.store import sqlite_path


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int
    tls_cert: str = ""  # both set: the listener speaks TLS, reloading the files when they change
    tls_key: str = ""


@dataclass(frozen=True, slots=True)
class Clients:
    rate_limit: float = 0.0  # requests per second per client IP; 0 = no limit
    burst: int = 50  # requests a client may send at once before the rate applies
    trusted_hops: int = 0  # X-Forwarded-For entries appended by proxies we trust


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int
    max_header: int
    max_pipelined: int
    max_connections: int
    header_timeout: float = 10.0  # headers not complete by then: 408, close (slowloris)
    body_timeout: float = 10.0  # longest pause between two reads of a body: 408, close
    request_timeout: float = 30.0  # a whole request not complete by then: 408, close
    keepalive_timeout: float = 75.0  # an idle keep-alive connection is closed after this


@dataclass(frozen=True, slots=True)
class RouteConfig:
    source: str
    events: tuple[str, ...]
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ForwarderConfig:
    enabled: bool
    visibility_timeout: float  # a delivery pending this long is presumed lost and re-claimed
    batch: int  # entries read per XREADGROUP
    consumer: str  # this process's consumer name; "" = the host name


@dataclass(frozen=True, slots=True)
class Config:
    listen: Listen
    admin: Listen
    limits: Limits
    shutdown_grace: float
    store: StoreConfig
    sources: tuple[SourceConfig, ...]
    targets: tuple[TargetConfig, ...]
    routes: tuple[RouteConfig, ...]
    unrouted: str | None  # None = drop
    data_dir: str
    log_level: str
    forwarder: ForwarderConfig
    clients: Clients = Clients()
    workers: int = 1  # processes sharing listen.port (SO_REUSEPORT); >1: gateway/workers.py

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)

    def target(self, name: str) -> TargetConfig:
        for target in self.targets:
            if target.name == name:
                return target
        raise KeyError(name)


_LOG_LEVELS: Final = ("debug", "info", "warning", "error")
MAX_WORKERS: Final = 64  # worker processes a config may ask for


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError("", f"cannot read config file {os.fspath(path)}: {reason}") from None
    return parse(text, os.environ if env is None else env)


def parse(text: str, env: Mapping[str, str]) -> Config:
    tree = read_yaml(text)
    if not isinstance(tree, dict):
        raise ConfigError("", "the config file must be a mapping")
    try:
        return _build(interpolate(tree, "", env), env)
    except RecursionError:  # only a self-referencing YAML alias nests this deep
        raise ConfigError("", "the config nests too deeply (a recursive YAML alias?)") from None


def redacted(config: Config) -> dict[str, object]:
    """The effective config for a startup log line, without credentials."""
    effective = plain(config)
    effective["targets"] = [
        {**plain(target), "headers": {name: "***" for name, _ in target.headers}}
        for target in config.targets
    ]
    return effective


# --- Sections ---------------------------------------------------------------

_TOP_KEYS: Final = (
    *("listen", "admin", "limits", "shutdown_grace", "store", "sources", "targets"),
    *("routes", "unrouted", "data_dir", "log_level", "forwarder", "clients", "workers"),
)


def _build(root: object, env: Mapping[str, str]) -> Config:
    top = Section(root, "", _TOP_KEYS)
    sources = read_sources(top.get("sources"), env)
    targets = read_targets(top.get("targets", None))
    store = read_store(top.get("store", None))
    return Config(
        listen=_public_listen(top.get("listen", None)),
        admin=_listen(top.get("admin", None), "admin", 9102),
        limits=_limits(top.get("limits", None)),
        shutdown_grace=read_duration(top, "shutdown_grace", "10s"),
        store=store,
        sources=sources,
        targets=targets,
        routes=_routes(top.get("routes", None), sources, targets),
        unrouted=_unrouted(top, targets),
        data_dir=read_text(top, "data_dir", "./data"),
        log_level=read_choice(top, "log_level", "info", _LOG_LEVELS),
        forwarder=_forwarder(top.get("forwarder", None), targets),
        clients=_clients(top.get("clients", None)),
        workers=_workers(top, store),
    )


def _workers(top: Section, store: StoreConfig) -> int:
    workers = read_int(top, "workers", 1, 1, MAX_WORKERS)
    if workers > 1 and sqlite_path(store.url) is not None:
        # One SQLite file, one writer process: its claims and blocking reads assume it.
        problem = "the SQLite store supports one process only; use workers: 1 or a Redis store"
        raise ConfigError("workers", problem)
    return workers


def _clients(node: object) -> Clients:
    s = Section(node, "clients", ("rate_limit", "burst", "trusted_hops"))
    rate = s.get("rate_limit", 0)
    try:
        per_second = float(rate) if not isinstance(rate, bool) else -1.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        per_second = -1.0
    if not 0.0 <= per_second <= 1e6:
        problem = f"expected requests per second (0 = no limit), got {show(rate)}"
        raise ConfigError(s.key_path("rate_limit"), problem)
    return Clients(
        rate_limit=per_second,
        burst=read_int(s, "burst", 50, 1, 1_000_000),
        trusted_hops=read_int(s, "trusted_hops", 0, 0, 16),
    )


def _optional_path(s: Section, key: str) -> str:
    value = s.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(s.key_path(key), f"expected a file path, got {show(value)}")
    return value


def _public_listen(node: object) -> Listen:
    s = Section(node, "listen", ("host", "port", "tls"))
    tls = Section(s.get("tls", None), "listen.tls", ("cert", "key"))
    cert, key = _optional_path(tls, "cert"), _optional_path(tls, "key")
    if bool(cert) != bool(key):
        raise ConfigError("listen.tls", "set both cert and key, or neither")
    for field, file in (("cert", cert), ("key", key)):
        if file and not os.path.isfile(file):
            raise ConfigError(f"listen.tls.{field}", f"no such file: {show(file)}")
    host, port = read_text(s, "host", "0.0.0.0"), read_port(s, "port", 8080)
    return Listen(host, port, cert, key)


# What a live delivery can hold an entry for, beyond its target's timeout twice over
# (waiting in the ready queue, then in flight): its ack or retry write.
_BOOKKEEPING_MARGIN = 5.0


def risks(config: Config) -> list[str]:
    """Settings that are accepted but put events at risk; logged at start."""
    slowest = max((t.timeout for t in config.targets), default=0.0)
    safe = 2 * slowest + _BOOKKEEPING_MARGIN
    visibility = config.forwarder.visibility_timeout
    if not config.forwarder.enabled or visibility >= safe:
        return []
    return [
        f"forwarder.visibility_timeout {visibility:g}s is under twice the longest target"
        f" timeout plus {_BOOKKEEPING_MARGIN:g}s ({safe:g}s): a slow delivery may be"
        " reclaimed by another consumer and sent twice"
    ]


def _forwarder(node: object, targets: tuple[TargetConfig, ...]) -> ForwarderConfig:
    s = Section(node, "forwarder", ("enabled", "visibility_timeout", "batch", "consumer"))
    visibility = read_duration(s, "visibility_timeout", "60s")
    slowest = max((t.timeout for t in targets), default=0.0)
    if visibility <= slowest:
        # Otherwise a delivery still in progress would be claimed and sent again.
        raise ConfigError(
            "forwarder.visibility_timeout",
            f"must be longer than the longest target timeout ({slowest:g}s)",
        )
    consumer = s.get("consumer", "")
    if not isinstance(consumer, str):
        raise ConfigError(s.key_path("consumer"), f"expected a string, got {show(consumer)}")
    if consumer and not NAME.fullmatch(consumer):
        raise ConfigError("forwarder.consumer", f"must match {NAME.pattern}, got {show(consumer)}")
    return ForwarderConfig(
        enabled=read_bool(s, "enabled", True),
        visibility_timeout=visibility,
        batch=read_int(s, "batch", 100, 1, 10000),
        consumer=consumer,
    )


def _listen(node: object, path: str, default_port: int) -> Listen:
    s = Section(node, path, ("host", "port"))
    return Listen(host=read_text(s, "host", "0.0.0.0"), port=read_port(s, "port", default_port))


def _limits(node: object) -> Limits:
    s = Section(node, "limits", _LIMIT_KEYS)
    return Limits(
        max_body=read_size(s, "max_body", "1MiB"),
        max_header=read_size(s, "max_header", "16KiB"),
        max_pipelined=read_int(s, "max_pipelined", 32, 1),
        max_connections=read_int(s, "max_connections", 10000, 1),
        header_timeout=read_duration(s, "header_timeout", "10s"),
        body_timeout=read_duration(s, "body_timeout", "10s"),
        request_timeout=read_duration(s, "request_timeout", "30s"),
        keepalive_timeout=read_duration(s, "keepalive_timeout", "75s"),
    )


_LIMIT_KEYS = (
    *("max_body", "max_header", "max_pipelined", "max_connections"),
    *("header_timeout", "body_timeout", "request_timeout", "keepalive_timeout"),
)


def _routes(
    node: object, sources: tuple[SourceConfig, ...], targets: tuple[TargetConfig, ...]
) -> tuple[RouteConfig, ...]:
    if node is None:
        return ()
    if not isinstance(node, list):
        raise ConfigError("routes", f"expected a list, got {show(node)}")
    source_names = {source.name for source in sources}
    target_names = {target.name for target in targets}
    return tuple(
        _route(item, f"routes[{i}]", source_names, target_names) for i, item in enumerate(node)
    )


def _route(node: object, path: str, sources: set[str], targets: set[str]) -> RouteConfig:
    s = Section(node, path, ("source", "events", "targets"))
    source = read_text(s, "source", REQUIRED)
    if source not in sources:
        raise ConfigError(s.key_path("source"), f"unknown source {show(source)}")
    events = read_strings(s, "events", ["*"])
    names = read_strings(s, "targets", REQUIRED)
    for i, name in enumerate(names):
        where = f"{s.key_path('targets')}[{i}]"
        if name not in targets:
            raise ConfigError(where, f"unknown target {show(name)}")
        if name in names[:i]:
            raise ConfigError(where, f"duplicate target {show(name)}")
    return RouteConfig(source, events, names)


def _unrouted(top: Section, targets: tuple[TargetConfig, ...]) -> str | None:
    value = read_text(top, "unrouted", "drop")
    if value == "drop":
        return None
    if not any(target.name == value for target in targets):
        problem = f'unknown target {show(value)} (use "drop" or a target name)'
        raise ConfigError("unrouted", problem)
    return value
