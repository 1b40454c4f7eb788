"""Schema-free machinery for reading a YAML config: the parts gateway.config builds on.

Reading the text (duplicate keys rejected), `${VAR}` interpolation, a `Section`
reader that rejects unknown keys, typed field readers, and the helpers that
quote values and hide credentials in messages. Nothing here knows which keys
exist; that is gateway.config's job. Every problem is a ConfigError naming its
key path. Interpolation runs *before* type checks, which is why the numeric
and boolean readers also accept strings.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Collection, Hashable, Mapping
from typing import Any, Final

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode

from gateway.errors import ConfigError

# The rule for source, target and consumer names.
NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# Passed as a reader's default when the key has none.
REQUIRED: Final = object()

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
                    None, None, f"duplicate key {show(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(text: str) -> object:
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


def interpolate(node: object, path: str, env: Mapping[str, str]) -> object:
    """Expand variables in string values (not keys), tracking paths for error messages."""
    if isinstance(node, str):
        return _substitute(node, path, env)
    if isinstance(node, dict):
        return {key: interpolate(value, join_key(path, key), env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(item, f"{path}[{i}]", env) for i, item in enumerate(node)]
    return node


def _substitute(text: str, path: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        dollar, name, default, malformed = match.groups()
        if dollar:
            return "$"
        if malformed:
            hint = "use ${VAR}, ${VAR:-default}, or $$ for a literal $"
            raise ConfigError(path, f"malformed variable reference in {show(text)} ({hint})")
        value = env.get(name)
        if default is not None and not value:  # like the shell's :-, empty counts as unset
            return str(default)
        if value is None:
            raise ConfigError(path, f"environment variable {name} is not set")
        return value

    # The replacement is not rescanned, so values from the environment are taken literally.
    return _VAR.sub(replace, text)


# --- Field readers ----------------------------------------------------------


class Section:
    """One config mapping and its key path; unknown keys are rejected on construction."""

    __slots__ = ("path", "values")

    def __init__(self, node: object, path: str, keys: Collection[str]) -> None:
        self.path = path
        self.values = read_mapping(node, path, keys)

    def key_path(self, key: str) -> str:
        return join_key(self.path, key)

    def get(self, key: str, default: object = REQUIRED) -> object:
        if key in self.values:
            return self.values[key]
        if default is REQUIRED:
            raise ConfigError(self.key_path(key), "required key missing")
        return default


def read_mapping(node: object, path: str, keys: Collection[str] | None = None) -> dict[str, object]:
    """A mapping, where an absent or empty (null) section means "all defaults"."""
    if node is None:
        return {}
    if not isinstance(node, dict):
        raise ConfigError(path, f"expected a mapping, got {show(node)}")
    for key in node:
        if keys is not None and key not in keys:
            raise ConfigError(join_key(path, key), "unknown key")
    return {str(key): value for key, value in node.items()}


def read_int(s: Section, key: str, default: object, lo: int, hi: int | None = None) -> int:
    raw = s.get(key, default)
    value = int(raw) if isinstance(raw, str) and _DIGITS.fullmatch(raw) else raw
    # bool is excluded explicitly: YAML's true would otherwise pass as the integer 1.
    if isinstance(value, int) and not isinstance(value, bool) and lo <= value <= (hi or value):
        return value
    wanted = f">= {lo}" if hi is None else f"{lo}-{hi}"
    raise ConfigError(s.key_path(key), f"expected an integer {wanted}, got {show(raw)}")


def read_port(s: Section, key: str, default: int) -> int:
    # 0 ("any free port") is only for tests, so the message advertises the real range.
    value = s.get(key, default)
    if (isinstance(value, int) and not isinstance(value, bool) and value == 0) or value == "0":
        return 0
    return read_int(s, key, default, 1, 65535)


def read_bool(s: Section, key: str, default: bool) -> bool:
    value = s.get(key, default)
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ConfigError(s.key_path(key), f"expected true or false, got {show(value)}")


def read_text(s: Section, key: str, default: object) -> str:
    value = s.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(s.key_path(key), f"expected a non-empty string, got {show(value)}")
    return value


def read_choice(s: Section, key: str, default: object, allowed: Collection[str]) -> str:
    # Case-folded so LOG_LEVEL=INFO from an environment works.
    value = s.get(key, default)
    if isinstance(value, str) and value.lower() in allowed:
        return value.lower()
    what = key.replace("_", " ")
    raise ConfigError(
        s.key_path(key), f"unknown {what} {show(value)} (allowed: {', '.join(allowed)})"
    )


def read_duration(s: Section, key: str, default: str) -> float:
    value = s.get(key, default)
    try:
        seconds = parse_duration(value if isinstance(value, str) else "")
    except ValueError:
        problem = f"not a duration: {show(value)} (use e.g. 250ms, 10s, 24h)"
        raise ConfigError(s.key_path(key), problem) from None
    if seconds <= 0:
        raise ConfigError(s.key_path(key), f"must be greater than 0, got {show(value)}")
    return seconds


def read_size(s: Section, key: str, default: str) -> int:
    value = s.get(key, default)
    try:
        size = parse_size(value if isinstance(value, str | int) else "")
    except ValueError:
        problem = f"not a size: {show(value)} (use e.g. 512, 64KiB, 1MiB)"
        raise ConfigError(s.key_path(key), problem) from None
    if size <= 0:
        raise ConfigError(s.key_path(key), f"must be greater than 0, got {show(value)}")
    return size


def read_strings(s: Section, key: str, default: object) -> tuple[str, ...]:
    value = s.get(key, default)
    if not isinstance(value, list) or not value:
        raise ConfigError(s.key_path(key), f"expected a non-empty list, got {show(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            where = f"{s.key_path(key)}[{i}]"
            raise ConfigError(where, f"expected a non-empty string, got {show(item)}")
    return tuple(value)


def read_named(node: object, path: str) -> dict[str, object]:
    named = read_mapping(node, path)
    for name in named:
        if not NAME.fullmatch(name):
            hint = 'use a-z, 0-9, "_" and "-", starting with a letter or digit, at most 64'
            raise ConfigError(join_key(path, name), f"invalid name ({hint})")
    return named


# --- Messages and redaction -------------------------------------------------


def join_key(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def show(value: object) -> str:
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


def redact_url(text: str) -> str:
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


def plain(obj: Any) -> dict[str, object]:
    """A dataclass as nested dicts and lists, with every string passed through redact_url.

    Any other object becomes its str(): a Secret shows only its origin.
    """
    return {field.name: _plain_value(getattr(obj, field.name)) for field in dataclasses.fields(obj)}


def _plain_value(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(value)
    if isinstance(value, tuple):
        return [_plain_value(item) for item in value]
    if isinstance(value, str):
        return redact_url(value)
    if value is None or isinstance(value, int | float):
        return value
    return str(value)
