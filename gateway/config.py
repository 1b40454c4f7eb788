"""Load the gateway's one YAML config file into frozen dataclasses.

Validation is complete and eager: every problem becomes a single ConfigError
line naming its key path, so a bad deploy fails at startup instead of at the
first webhook. `${VAR}` references are expanded in string scalars *before*
type checks, which is why numeric and boolean readers also accept strings.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode

from gateway.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int
    max_header: int
    max_pipelined: int
    max_connections: int


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


@dataclass(frozen=True, slots=True)
class SourceConfig:
    name: str
    kind: str
    path: str
    ce_source: str


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float
    max: float


@dataclass(frozen=True, slots=True)
class TargetConfig:
    name: str
    url: str
    host: str
    port: int
    path: str  # includes the query string, if any
    format: str
    connect_timeout: float
    timeout: float
    concurrency: int
    max_attempts: int
    backoff: Backoff
    headers: tuple[tuple[str, str], ...]


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


# Source kind -> default ce_source (the provider's canonical origin).
_KINDS: Final = {"inboxcomponents": "https://app.inboxcomponents.com"}
_FORMATS: Final = ("cloudevents-binary", "cloudevents-structured", "raw")
_LOG_LEVELS: Final = ("debug", "info", "warning", "error")
_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_KEY_PREFIX: Final = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_HEADER_VALUE_BAD: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # HTAB is allowed
_UNSAFE: Final = re.compile(r"[\s\x00-\x1f\x7f]")
# Headers that frame the forwarded request; letting config override them would corrupt it.
_FRAMING_HEADERS: Final = frozenset({"content-length", "transfer-encoding", "connection"})
_DIGITS: Final = re.compile(r"[0-9]{1,18}")  # bounded: int() refuses huge digit strings
_DURATION: Final = re.compile(r"([0-9]{1,12}(?:\.[0-9]{1,9})?)(ms|s|m|h|d)")
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE: Final = re.compile(r"([0-9]{1,15})([A-Za-z]*)")
_SIZE_UNITS: Final = {
    **{"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9},
    **{"kib": 2**10, "mib": 2**20, "gib": 2**30},
}
# $$ | ${NAME} | ${NAME:-default} | any other "${" (malformed, reported).
_VAR: Final = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|(\{))")
_PASSWORD_PARAM: Final = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_REQUIRED: Final = object()


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError("", f"cannot read config file {os.fspath(path)}: {reason}") from None
    return parse(text, os.environ if env is None else env)


def parse(text: str, env: Mapping[str, str]) -> Config:
    tree = _read_yaml(text)
    if not isinstance(tree, dict):
        raise ConfigError("", "the config file must be a mapping")
    try:
        return _build(_interpolate(tree, "", env))
    except RecursionError:  # only a self-referencing YAML alias nests this deep
        raise ConfigError("", "the config nests too deeply (a recursive YAML alias?)") from None


def parse_duration(text: str) -> float:
    """Seconds; a unit is mandatory because a bare "10" could mean s or ms."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not a duration: {text!r}")
    return float(match[1]) * _DURATION_UNITS[match[2]]


def parse_size(value: str | int) -> int:
    """Bytes; KB/MB/GB are decimal and KiB/MiB/GiB binary, as their names say."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    unit = _SIZE_UNITS.get(match[2].lower()) if match else None
    if match is None or unit is None:
        raise ValueError(f"not a size: {value!r}")
    return int(match[1]) * unit


def redacted(config: Config) -> dict[str, object]:
    """The effective config for a startup log line, without credentials."""
    plain = _plain(config)
    plain["targets"] = [
        {**_plain(target), "headers": {name: "***" for name, _ in target.headers}}
        for target in config.targets
    ]
    return plain


# --- YAML and interpolation -------------------------------------------------


class _Loader(yaml.SafeLoader):
    """safe_load semantics, except duplicate keys fail instead of the last one silently winning."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            # Merge keys (<<) may legitimately be overridden, so only plain scalar keys count.
            if not isinstance(key_node, ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise ConstructorError(
                    None, None, f"duplicate key {_show(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _read_yaml(text: str) -> object:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = _one_line(exc.problem or str(exc))
        if mark is None:
            raise ConfigError("", f"invalid YAML: {problem}") from None
        where = f"line {mark.line + 1} column {mark.column + 1}"
        raise ConfigError("", f"invalid YAML at {where}: {problem}") from None
    # Reader errors carry no mark; bad timestamps (2024-13-01) surface as ValueError.
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise ConfigError("", f"invalid YAML: {_one_line(str(exc))}") from None


def _interpolate(node: object, path: str, env: Mapping[str, str]) -> object:
    """Expand variables in string values (not keys), tracking paths for error messages."""
    if isinstance(node, str):
        return _substitute(node, path, env)
    if isinstance(node, dict):
        return {key: _interpolate(value, _join(path, key), env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate(item, f"{path}[{i}]", env) for i, item in enumerate(node)]
    return node


def _substitute(text: str, path: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        dollar, name, default, malformed = match.groups()
        if dollar:
            return "$"
        if malformed:
            hint = "use ${VAR}, ${VAR:-default}, or $$ for a literal $"
            raise ConfigError(path, f"malformed variable reference in {_show(text)} ({hint})")
        value = env.get(name)
        if default is not None and not value:  # like the shell's :-, empty counts as unset
            return str(default)
        if value is None:
            raise ConfigError(path, f"environment variable {name} is not set")
        return value

    # The replacement is not rescanned, so values from the environment are taken literally.
    return _VAR.sub(replace, text)


# --- Field readers ----------------------------------------------------------


class _Section:
    """One config mapping and its key path; unknown keys are rejected on construction."""

    __slots__ = ("path", "values")

    def __init__(self, node: object, path: str, keys: Collection[str]) -> None:
        self.path = path
        self.values = _mapping(node, path, keys)

    def key_path(self, key: str) -> str:
        return _join(self.path, key)

    def get(self, key: str, default: object = _REQUIRED) -> object:
        if key in self.values:
            return self.values[key]
        if default is _REQUIRED:
            raise ConfigError(self.key_path(key), "required key missing")
        return default


def _mapping(node: object, path: str, keys: Collection[str] | None = None) -> dict[str, object]:
    """A mapping, where an absent or empty (null) section means "all defaults"."""
    if node is None:
        return {}
    if not isinstance(node, dict):
        raise ConfigError(path, f"expected a mapping, got {_show(node)}")
    for key in node:
        if keys is not None and key not in keys:
            raise ConfigError(_join(path, key), "unknown key")
    return {str(key): value for key, value in node.items()}


def _int(s: _Section, key: str, default: object, lo: int, hi: int | None = None) -> int:
    raw = s.get(key, default)
    value = int(raw) if isinstance(raw, str) and _DIGITS.fullmatch(raw) else raw
    # bool is excluded explicitly: YAML's true would otherwise pass as the integer 1.
    if isinstance(value, int) and not isinstance(value, bool) and lo <= value <= (hi or value):
        return value
    wanted = f">= {lo}" if hi is None else f"{lo}-{hi}"
    raise ConfigError(s.key_path(key), f"expected an integer {wanted}, got {_show(raw)}")


def _port(s: _Section, key: str, default: int) -> int:
    # 0 ("any free port") is only for tests, so the message advertises the real range.
    value = s.get(key, default)
    if (isinstance(value, int) and not isinstance(value, bool) and value == 0) or value == "0":
        return 0
    return _int(s, key, default, 1, 65535)


def _bool(s: _Section, key: str, default: bool) -> bool:
    value = s.get(key, default)
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ConfigError(s.key_path(key), f"expected true or false, got {_show(value)}")


def _text(s: _Section, key: str, default: object) -> str:
    value = s.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(s.key_path(key), f"expected a non-empty string, got {_show(value)}")
    return value


def _choice(s: _Section, key: str, default: object, allowed: Collection[str]) -> str:
    # Case-folded so LOG_LEVEL=INFO from an environment works.
    value = s.get(key, default)
    if isinstance(value, str) and value.lower() in allowed:
        return value.lower()
    what = key.replace("_", " ")
    raise ConfigError(
        s.key_path(key), f"unknown {what} {_show(value)} (allowed: {', '.join(allowed)})"
    )


def _duration(s: _Section, key: str, default: str) -> float:
    value = s.get(key, default)
    try:
        seconds = parse_duration(value if isinstance(value, str) else "")
    except ValueError:
        problem = f"not a duration: {_show(value)} (use e.g. 250ms, 10s, 24h)"
        raise ConfigError(s.key_path(key), problem) from None
    if seconds <= 0:
        raise ConfigError(s.key_path(key), f"must be greater than 0, got {_show(value)}")
    return seconds


def _size(s: _Section, key: str, default: str) -> int:
    value = s.get(key, default)
    try:
        size = parse_size(value if isinstance(value, str | int) else "")
    except ValueError:
        problem = f"not a size: {_show(value)} (use e.g. 512, 64KiB, 1MiB)"
        raise ConfigError(s.key_path(key), problem) from None
    if size <= 0:
        raise ConfigError(s.key_path(key), f"must be greater than 0, got {_show(value)}")
    return size


def _strings(s: _Section, key: str, default: object) -> tuple[str, ...]:
    value = s.get(key, default)
    if not isinstance(value, list) or not value:
        raise ConfigError(s.key_path(key), f"expected a non-empty list, got {_show(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            where = f"{s.key_path(key)}[{i}]"
            raise ConfigError(where, f"expected a non-empty string, got {_show(item)}")
    return tuple(value)


def _named(node: object, path: str) -> dict[str, object]:
    named = _mapping(node, path)
    for name in named:
        if not _NAME.fullmatch(name):
            hint = 'use a-z, 0-9, "_" and "-", starting with a letter or digit, at most 64'
            raise ConfigError(_join(path, name), f"invalid name ({hint})")
    return named


# --- Sections ---------------------------------------------------------------

_TOP_KEYS: Final = (
    *("listen", "admin", "limits", "shutdown_grace", "store", "sources", "targets"),
    *("routes", "unrouted", "data_dir", "log_level", "forwarder"),
)
_STORE_KEYS: Final = (
    *("url", "dedup_ttl", "admit_deadline", "partitions", "key_prefix", "pool_size"),
    *("socket_timeout", "connect_timeout"),
)
_TARGET_KEYS: Final = (
    *("url", "format", "connect_timeout", "timeout", "concurrency", "max_attempts"),
    *("backoff", "headers"),
)


def _build(root: object) -> Config:
    top = _Section(root, "", _TOP_KEYS)
    sources = _sources(top.get("sources"))
    targets = _targets(top.get("targets", None))
    return Config(
        listen=_listen(top.get("listen", None), "listen", 8080),
        admin=_listen(top.get("admin", None), "admin", 9102),
        limits=_limits(top.get("limits", None)),
        shutdown_grace=_duration(top, "shutdown_grace", "10s"),
        store=_store(top.get("store", None)),
        sources=sources,
        targets=targets,
        routes=_routes(top.get("routes", None), sources, targets),
        unrouted=_unrouted(top, targets),
        data_dir=_text(top, "data_dir", "./data"),
        log_level=_choice(top, "log_level", "info", _LOG_LEVELS),
        forwarder=_forwarder(top.get("forwarder", None), targets),
    )


def _forwarder(node: object, targets: tuple[TargetConfig, ...]) -> ForwarderConfig:
    s = _Section(node, "forwarder", ("enabled", "visibility_timeout", "batch", "consumer"))
    visibility = _duration(s, "visibility_timeout", "60s")
    slowest = max((t.timeout for t in targets), default=0.0)
    if visibility <= slowest:
        # Otherwise a delivery still in progress would be claimed and sent again.
        raise ConfigError(
            "forwarder.visibility_timeout",
            f"must be longer than the longest target timeout ({slowest:g}s)",
        )
    consumer = s.get("consumer", "")
    if not isinstance(consumer, str):
        raise ConfigError(s.key_path("consumer"), f"expected a string, got {_show(consumer)}")
    if consumer and not _NAME.fullmatch(consumer):
        raise ConfigError(
            "forwarder.consumer", f"must match {_NAME.pattern}, got {_show(consumer)}"
        )
    return ForwarderConfig(
        enabled=_bool(s, "enabled", True),
        visibility_timeout=visibility,
        batch=_int(s, "batch", 100, 1, 10000),
        consumer=consumer,
    )


def _listen(node: object, path: str, default_port: int) -> Listen:
    s = _Section(node, path, ("host", "port"))
    return Listen(host=_text(s, "host", "0.0.0.0"), port=_port(s, "port", default_port))


def _limits(node: object) -> Limits:
    s = _Section(node, "limits", ("max_body", "max_header", "max_pipelined", "max_connections"))
    return Limits(
        max_body=_size(s, "max_body", "1MiB"),
        max_header=_size(s, "max_header", "16KiB"),
        max_pipelined=_int(s, "max_pipelined", 32, 1),
        max_connections=_int(s, "max_connections", 10000, 1),
    )


def _store(node: object) -> StoreConfig:
    s = _Section(node, "store", _STORE_KEYS)
    url = _text(s, "url", "redis://127.0.0.1:6379/0")
    if not _is_store_url(url):
        hint = "use redis://host:port/db, rediss://host:port/db or unix:///path/to/socket"
        raise ConfigError("store.url", f"not a store URL: {_show(_redact_url(url))} ({hint})")
    key_prefix = _text(s, "key_prefix", "gw")
    if not _KEY_PREFIX.fullmatch(key_prefix):
        problem = f"expected 1-32 of A-Z a-z 0-9 _ . -, got {_show(key_prefix)}"
        raise ConfigError("store.key_prefix", problem)
    return StoreConfig(
        url=url,
        dedup_ttl=_duration(s, "dedup_ttl", "24h"),
        admit_deadline=_duration(s, "admit_deadline", "2s"),
        partitions=_int(s, "partitions", 1, 1, 1024),
        key_prefix=key_prefix,
        pool_size=_int(s, "pool_size", 32, 1),
        socket_timeout=_duration(s, "socket_timeout", "1s"),
        connect_timeout=_duration(s, "connect_timeout", "1s"),
    )


def _is_store_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # evaluated for its ValueError on a bad port
    except ValueError:
        return False
    if _UNSAFE.search(url):
        return False
    if parts.scheme == "unix":
        return parts.path.startswith("/")
    db_ok = re.fullmatch(r"/?|/[0-9]+", parts.path) is not None
    return parts.scheme in ("redis", "rediss") and bool(parts.hostname) and db_ok


def _sources(node: object) -> tuple[SourceConfig, ...]:
    named = _named(node, "sources")
    if not named:
        raise ConfigError("sources", "at least one source is required")
    sources: list[SourceConfig] = []
    for name, value in named.items():
        source = _source(name, value, f"sources.{name}")
        owner = next((other.name for other in sources if other.path == source.path), None)
        if owner is not None:
            problem = f"duplicate path, also used by sources.{owner}"
            raise ConfigError(f"sources.{name}.path", problem)
        sources.append(source)
    return tuple(sources)


def _source(name: str, node: object, path: str) -> SourceConfig:
    s = _Section(node, path, ("kind", "path", "ce_source"))
    kind = _choice(s, "kind", _REQUIRED, tuple(_KINDS))
    url_path = _text(s, "path", _REQUIRED)
    if not url_path.startswith("/") or re.search(r"[?#\s\x00-\x1f\x7f]", url_path):
        problem = 'expected a path starting with "/", without "?", "#" or whitespace'
        raise ConfigError(s.key_path("path"), f"{problem}, got {_show(url_path)}")
    return SourceConfig(name, kind, url_path, _text(s, "ce_source", _KINDS[kind]))


def _targets(node: object) -> tuple[TargetConfig, ...]:
    named = _named(node, "targets")
    if "drop" in named:  # it would be indistinguishable from `unrouted: drop`
        raise ConfigError("targets.drop", 'the name "drop" is reserved')
    return tuple(_target(name, value, f"targets.{name}") for name, value in named.items())


def _target(name: str, node: object, path: str) -> TargetConfig:
    s = _Section(node, path, _TARGET_KEYS)
    url = _text(s, "url", _REQUIRED)
    host, port, url_path = _http_url(url, s.key_path("url"))
    return TargetConfig(
        name=name,
        url=url,
        host=host,
        port=port,
        path=url_path,
        format=_choice(s, "format", "cloudevents-binary", _FORMATS),
        connect_timeout=_duration(s, "connect_timeout", "1s"),
        timeout=_duration(s, "timeout", "10s"),
        concurrency=_int(s, "concurrency", 64, 1),
        max_attempts=_int(s, "max_attempts", 10, 1),
        backoff=_backoff(s.get("backoff", None), s.key_path("backoff")),
        headers=_headers(s.get("headers", None), s.key_path("headers")),
    )


def _http_url(url: str, path: str) -> tuple[str, int, str]:
    """(host, port, path?query) of a plain-http target URL."""
    try:
        parts = urlsplit(url)
        port = parts.port or 80
    except ValueError:
        parts, port = None, 0
    if parts is None or not parts.scheme or not parts.netloc or _UNSAFE.search(url):
        raise ConfigError(path, f"not a URL: {_show(_redact_url(url))}")
    if parts.scheme != "http":
        problem = "only http:// targets are supported (TLS to a localhost app is out of scope)"
        raise ConfigError(path, f"{problem}, got {_show(_redact_url(url))}")
    if "@" in parts.netloc:  # the forwarder would silently drop them
        raise ConfigError(path, "credentials in the URL are not supported; use headers")
    if not parts.hostname:
        raise ConfigError(path, f"not a URL: {_show(url)}")
    query = f"?{parts.query}" if parts.query else ""
    return parts.hostname, port, (parts.path or "/") + query


def _backoff(node: object, path: str) -> Backoff:
    s = _Section(node, path, ("initial", "max"))
    initial = _duration(s, "initial", "1s")
    maximum = _duration(s, "max", "10m")
    if maximum < initial:
        raise ConfigError(s.key_path("max"), "backoff.max must be >= backoff.initial")
    return Backoff(initial, maximum)


def _headers(node: object, path: str) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    for name, value in _mapping(node, path).items():
        where = _join(path, name)
        if not _HEADER_NAME.fullmatch(name):
            raise ConfigError(where, "not a valid header name")
        if name.lower() in _FRAMING_HEADERS:
            raise ConfigError(where, "set by the gateway itself, cannot be configured")
        if any(name.lower() == other.lower() for other, _ in headers):
            raise ConfigError(where, "duplicate header (names are case-insensitive)")
        if not isinstance(value, str):  # values are never echoed: they are often secrets
            raise ConfigError(where, "expected a string value")
        if _HEADER_VALUE_BAD.search(value):
            raise ConfigError(where, "header value must not contain CR, LF or control characters")
        headers.append((name, value))
    return tuple(headers)


def _routes(
    node: object, sources: tuple[SourceConfig, ...], targets: tuple[TargetConfig, ...]
) -> tuple[RouteConfig, ...]:
    if node is None:
        return ()
    if not isinstance(node, list):
        raise ConfigError("routes", f"expected a list, got {_show(node)}")
    source_names = {source.name for source in sources}
    target_names = {target.name for target in targets}
    return tuple(
        _route(item, f"routes[{i}]", source_names, target_names) for i, item in enumerate(node)
    )


def _route(node: object, path: str, sources: set[str], targets: set[str]) -> RouteConfig:
    s = _Section(node, path, ("source", "events", "targets"))
    source = _text(s, "source", _REQUIRED)
    if source not in sources:
        raise ConfigError(s.key_path("source"), f"unknown source {_show(source)}")
    events = _strings(s, "events", ["*"])
    names = _strings(s, "targets", _REQUIRED)
    for i, name in enumerate(names):
        where = f"{s.key_path('targets')}[{i}]"
        if name not in targets:
            raise ConfigError(where, f"unknown target {_show(name)}")
        if name in names[:i]:
            raise ConfigError(where, f"duplicate target {_show(name)}")
    return RouteConfig(source, events, names)


def _unrouted(top: _Section, targets: tuple[TargetConfig, ...]) -> str | None:
    value = _text(top, "unrouted", "drop")
    if value == "drop":
        return None
    if not any(target.name == value for target in targets):
        problem = f'unknown target {_show(value)} (use "drop" or a target name)'
        raise ConfigError("unrouted", problem)
    return value


# --- Helpers ----------------------------------------------------------------


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _show(value: object) -> str:
    """A value as quoted in messages: strings in double quotes, containers by kind."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "an empty value"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    return str(value)


def _redact_url(text: str) -> str:
    """Hide userinfo passwords (and ?password=, which redis URLs accept) in URL-like text."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    end = next((i for i, char in enumerate(rest) if char in "/?#"), len(rest))
    userinfo, at, hostport = rest[:end].rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        # A lone userinfo is redacted too: for redis:// and http:// it is often a token.
        userinfo = f"{user}:***" if colon else "***"
        rest = f"{userinfo}@{hostport}{rest[end:]}"
    return _PASSWORD_PARAM.sub(r"\1***", f"{scheme}://{rest}")


def _plain(obj: Any) -> dict[str, object]:
    return {field.name: _plain_value(getattr(obj, field.name)) for field in dataclasses.fields(obj)}


def _plain_value(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(value)
    if isinstance(value, tuple):
        return [_plain_value(item) for item in value]
    if isinstance(value, str):
        return _redact_url(value)
    return value
