"""Finding the idempotency key and the event type: in a header, or at a dot
path of the JSON body.

Both end up in HTTP headers (ce-id, ce-type) and Redis keys, so they must be
visible ASCII and bounded: a hostile sender cannot bloat the dedup keyspace
or smuggle a line break into a forwarded request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import msgspec

from gateway.errors import Rejection

if TYPE_CHECKING:
    from gateway.config_sources import FieldRef

TOO_DEEP: Final = "invalid JSON: nested too deeply"


class FieldReader:
    """A compiled FieldRef ("header", "X-Name") or ("body", "dot.path"):
    a lower-cased header name or a path of keys."""

    __slots__ = ("alias", "code", "header", "label", "limit", "path")

    def __init__(
        self,
        location: str,
        name: str,
        code: str,
        limit: int,
        aliases: Mapping[bytes, bytes] | None = None,
    ) -> None:
        self.code = code  # the Rejection code when the value is absent
        self.limit = limit
        self.header: bytes | None = None
        self.alias: bytes | None = None
        self.path: tuple[str, ...] = ()
        if location == "header":
            self.header = name.lower().encode("ascii")
            self.alias = (aliases or {}).get(self.header)
            self.label = f"header {name}"
        else:
            self.path = tuple(name.split("."))
            self.label = name

    @classmethod
    def of(
        cls, ref: FieldRef, code: str, limit: int, aliases: Mapping[bytes, bytes]
    ) -> FieldReader:
        return cls(ref.location, ref.name, code, limit, aliases)

    @property
    def in_body(self) -> bool:
        return self.header is None

    def read(self, headers: list[tuple[bytes, bytes]], document: object) -> str:
        if self.header is None:
            return self.check(_walk(document, self.path))
        value = header(headers, self.header)
        if value is None and self.alias is not None:
            value = header(headers, self.alias)
        return self.check(None if value is None else value.decode("latin-1"))

    def check(self, value: object) -> str:
        if type(value) is str and 0 < len(value) <= self.limit and visible(value):
            return value  # the common case
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # numeric ids are common; they are visible ASCII as text
        if value is None or value == "":
            raise Rejection(f"missing or empty {self.label}", code=self.code)
        if not isinstance(value, str):
            raise Rejection(f"{self.label} must be a string", code="invalid_payload")
        if len(value) > self.limit or not visible(value):
            problem = f"{self.label} must be 1-{self.limit} visible ASCII characters"
            raise Rejection(problem, code="invalid_payload")
        return value


def visible(value: str) -> bool:
    """One or more visible ASCII characters (0x21-0x7e): printable ASCII without the
    space. Two fifths faster than a regex fullmatch of [\x21-\x7e]+ on a 64-character key."""
    return value != "" and value.isascii() and value.isprintable() and " " not in value


def read_fields(
    key: FieldReader, event: FieldReader, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[str, str]:
    """(key, event type); the body is decoded only if one of them lives there."""
    document = decode_json(body) if key.in_body or event.in_body else None
    return key.read(headers, document), event.read(headers, document)


def decode_json(body: bytes) -> object:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise Rejection(f"invalid JSON: {exc}", code="invalid_json") from None
    except RecursionError:  # msgspec's nesting limit: a small body can hit it
        raise Rejection(TOO_DEEP, code="invalid_json") from None


def _walk(document: object, path: tuple[str, ...]) -> object:
    for step in path:
        if not isinstance(document, dict):
            return None
        document = document.get(step)
    return document


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of a header; the listener gives names lower-cased."""
    for key, value in headers:
        if key == name:
            return value
    return None
