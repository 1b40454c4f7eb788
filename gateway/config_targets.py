"""The `targets` section of the config: where events are delivered, and how."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from gateway.config_fields import (
    REQUIRED,
    Section,
    join_key,
    read_choice,
    read_duration,
    read_int,
    read_mapping,
    read_named,
    read_text,
    redact_url,
    show,
)
from gateway.errors import ConfigError

_FORMATS: Final = ("cloudevents-binary", "cloudevents-structured", "raw")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_HEADER_VALUE_BAD: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # HTAB is allowed
# Headers that frame the forwarded request; letting config override them would corrupt it.
_FRAMING_HEADERS: Final = frozenset({"content-length", "transfer-encoding", "connection"})
UNSAFE: Final = re.compile(r"[\s\x00-\x1f\x7f]")  # whitespace and controls: never in a URL
_TARGET_KEYS: Final = (
    *("url", "format", "connect_timeout", "timeout", "concurrency", "max_attempts"),
    *("backoff", "headers"),
)


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


def read_targets(node: object) -> tuple[TargetConfig, ...]:
    named = read_named(node, "targets")
    if "drop" in named:  # it would be indistinguishable from `unrouted: drop`
        raise ConfigError("targets.drop", 'the name "drop" is reserved')
    return tuple(_target(name, value, f"targets.{name}") for name, value in named.items())


def _target(name: str, node: object, path: str) -> TargetConfig:
    s = Section(node, path, _TARGET_KEYS)
    url = read_text(s, "url", REQUIRED)
    host, port, url_path = _http_url(url, s.key_path("url"))
    return TargetConfig(
        name=name,
        url=url,
        host=host,
        port=port,
        path=url_path,
        format=read_choice(s, "format", "cloudevents-binary", _FORMATS),
        connect_timeout=read_duration(s, "connect_timeout", "1s"),
        timeout=read_duration(s, "timeout", "10s"),
        concurrency=read_int(s, "concurrency", 64, 1),
        max_attempts=read_int(s, "max_attempts", 10, 1),
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
    if parts is None or not parts.scheme or not parts.netloc or UNSAFE.search(url):
        raise ConfigError(path, f"not a URL: {show(redact_url(url))}")
    if parts.scheme != "http":
        problem = "only http:// targets are supported (TLS to a localhost app is out of scope)"
        raise ConfigError(path, f"{problem}, got {show(redact_url(url))}")
    if "@" in parts.netloc:  # the forwarder would silently drop them
        raise ConfigError(path, "credentials in the URL are not supported; use headers")
    if not parts.hostname:
        raise ConfigError(path, f"not a URL: {show(url)}")
    query = f"?{parts.query}" if parts.query else ""
    return parts.hostname, port, (parts.path or "/") + query


def _backoff(node: object, path: str) -> Backoff:
    s = Section(node, path, ("initial", "max"))
    initial = read_duration(s, "initial", "1s")
    maximum = read_duration(s, "max", "10m")
    if maximum < initial:
        raise ConfigError(s.key_path("max"), "backoff.max must be >= backoff.initial")
    return Backoff(initial, maximum)


def _headers(node: object, path: str) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    for name, value in read_mapping(node, path).items():
        where = join_key(path, name)
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
