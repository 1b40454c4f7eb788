"""Generic HMAC: a provider without a built-in kind, described in the config.

The MAC (sha256 or sha512, hex or base64, after an optional prefix) sits in
one header; the signed bytes follow a template such as `{timestamp}.{body}`
whose timestamp and id come from headers. A timestamp, when signed, is held
to the tolerance both ways.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from gateway.errors import Rejection
from gateway.sources.base import (
    Claim,
    Headers,
    HmacSource,
    bad_signature,
    missing_signature,
    unbase64,
    unhex,
    unix_time,
)
from gateway.sources.fields import header

if TYPE_CHECKING:
    from gateway.config_sources import SourceConfig

_SPLIT: Final = re.compile(r"(\{body\}|\{timestamp\}|\{id\})")
_DECODERS: Final[dict[str, Callable[[bytes], bytes | None]]] = {"hex": unhex, "base64": unbase64}


class GenericHmac(HmacSource):
    __slots__ = ("_decode", "_header", "_id", "_label", "_parts", "_prefix", "_stamp")

    def __init__(self, config: SourceConfig) -> None:
        spec = config.signature
        if spec is None:
            raise ValueError("kind generic-hmac needs a signature")
        super().__init__(config, spec.algorithm)
        self._label = spec.header
        self._header = spec.header.lower().encode("ascii")
        self._prefix = spec.prefix.encode("ascii")
        self._decode = _DECODERS[spec.encoding]
        self._stamp = spec.timestamp_header.lower().encode("ascii")
        self._id = spec.id_header.lower().encode("ascii")
        self._parts = tuple(part for part in _SPLIT.split(spec.signed) if part)

    def claim(self, headers: Headers) -> Claim | Rejection:
        value = header(headers, self._header)
        if value is None:
            return missing_signature(f"{self._label} header")
        mac = self._decode(value[len(self._prefix) :]) if value.startswith(self._prefix) else None
        if not mac:
            return bad_signature(f"malformed {self._label} header")
        values = self._signed_headers(headers)
        if isinstance(values, Rejection):
            return values
        before, after = self._render(values)
        stamp = values.get("{timestamp}")
        return Claim((mac,), before, after, None if stamp is None else unix_time(stamp))

    def _signed_headers(self, headers: Headers) -> dict[str, bytes] | Rejection:
        values: dict[str, bytes] = {}
        for placeholder, name in (("{timestamp}", self._stamp), ("{id}", self._id)):
            if not name:
                continue
            value = header(headers, name)
            if not value:
                return missing_signature(f"{name.decode()} header")
            values[placeholder] = value
        if "{timestamp}" in values and unix_time(values["{timestamp}"]) is None:
            return bad_signature(f"malformed {self._stamp.decode()} header")
        return values

    def _render(self, values: dict[str, bytes]) -> tuple[bytes, bytes]:
        """The signed bytes before and after the body."""
        pieces = [values.get(part) or part.encode() for part in self._parts]
        split = self._parts.index("{body}")
        return b"".join(pieces[:split]), b"".join(pieces[split + 1 :])
