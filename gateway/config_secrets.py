"""Secrets in the config: never inline, always named by their origin.

A secret is `{env: NAME}` (an environment variable) or `{file: /path}` (a
file's contents, trailing newline stripped, as Kubernetes secret volumes and
editors leave them). `Secret.reveal()` is the only way to the bytes; its repr
and str name the origin, so a repr, a log line or `redacted(config)` shows
where a secret comes from and never what it is. Error messages never quote
a value that might be the secret itself.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from typing import Final

from gateway.config_fields import REQUIRED, Section, read_text
from gateway.errors import ConfigError

_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_FILE_MAX: Final = 64 << 10


class Secret:
    """Key material from `env:NAME` or `file:/path`; its repr names only the origin."""

    __slots__ = ("_value", "origin")

    def __init__(self, origin: str, value: bytes) -> None:
        if not value:
            raise ValueError(f"secret {origin} is empty")
        self.origin = origin
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.origin})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return self.origin == other.origin and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self.origin)


def read_secrets(node: object, path: str, env: Mapping[str, str]) -> tuple[Secret, ...]:
    if node is None:
        return ()
    if not isinstance(node, list) or not node:
        # Never quoted: a plain string here is most likely the secret itself.
        raise ConfigError(path, "expected a list of {env: VAR} or {file: /path} entries")
    return tuple(_secret(item, f"{path}[{i}]", env) for i, item in enumerate(node))


def _secret(node: object, path: str, env: Mapping[str, str]) -> Secret:
    if not isinstance(node, dict):
        raise ConfigError(path, "secrets are never written inline; use {env: VAR} or {file: /path}")
    s = Section(node, path, ("env", "file"))
    if len(s.values) != 1:
        raise ConfigError(path, "expected exactly one of env: or file:")
    return _env_secret(s, env) if "env" in s.values else _file_secret(s)


def _env_secret(s: Section, env: Mapping[str, str]) -> Secret:
    name = s.get("env")
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise ConfigError(s.key_path("env"), "expected an environment variable name")
    value = env.get(name)
    if value is None:
        raise ConfigError(s.path, f"environment variable {name} is not set")
    if not value:
        raise ConfigError(s.path, f"environment variable {name} is empty")
    return Secret(f"env:{name}", value.encode())


def _file_secret(s: Section) -> Secret:
    name = read_text(s, "file", REQUIRED)
    try:
        with open(name, "rb") as file:
            data = file.read(_SECRET_FILE_MAX + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(s.path, f"cannot read secret file {name}: {reason}") from None
    if len(data) > _SECRET_FILE_MAX:
        raise ConfigError(s.path, f"secret file {name} is larger than 64KiB")
    value = data.rstrip(b"\r\n")  # files written by `echo` or editors end in a newline
    if not value:
        raise ConfigError(s.path, f"secret file {name} is empty")
    return Secret(f"file:{name}", value)
