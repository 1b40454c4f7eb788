"""The `sources:` section: who sends webhooks, how their requests are
authenticated, and where the idempotency key and event type are.

The values are frozen, slotted dataclasses that validate in their
constructors, so an invalid SourceConfig cannot exist; the reader below maps
their complaints, and its own about the YAML's shape, to one-line
ConfigErrors naming the key path.

Secrets are never inline in the YAML; gateway.config_secrets reads them and
keeps them out of reprs and messages.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from gateway.config_fields import (
    REQUIRED,
    Section,
    join_key,
    read_bool,
    read_choice,
    read_duration,
    read_named,
    read_text,
    show,
)
from gateway.config_secrets import Secret as Secret  # re-exported
from gateway.config_secrets import read_secrets
from gateway.errors import ConfigError

ALGORITHMS: Final = ("sha256", "sha512")
ENCODINGS: Final = ("hex", "base64")
PLACEHOLDERS: Final = ("body", "timestamp", "id")

_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_PLACEHOLDER: Final = re.compile(r"\{([^{}]*)\}")
_TYPE_PREFIX: Final = re.compile(r"[\x21-\x7e]{0,64}")  # ends up in the ce-type header
_BAD_PATH: Final = re.compile(r"[?#\s\x00-\x1f\x7f]")


class InvalidField(ValueError):
    """A constructor's complaint about one of its fields ("" = the value as a whole)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


@dataclass(frozen=True, slots=True)
class FieldRef:
    """Where a value is in a request: `header:<Name>` or `body:<dot.path>` (JSON)."""

    location: str
    name: str

    def __post_init__(self) -> None:
        if self.location == "header":
            valid = _HEADER_NAME.fullmatch(self.name) is not None
        else:
            valid = self.location == "body" and all(self.name.split("."))
        if not valid:
            hint = 'expected "header:<Name>" or "body:<dot.path>"'
            raise ValueError(f"{hint}, got {show(str(self))}")

    @classmethod
    def parse(cls, text: str) -> FieldRef:
        location, _, name = text.partition(":")
        return cls(location, name)

    def __str__(self) -> str:
        return f"{self.location}:{self.name}"


@dataclass(frozen=True, slots=True)
class GenericSignature:
    """An HMAC in one header over a template of the body, a timestamp and an id."""

    header: str
    algorithm: str = "sha256"
    encoding: str = "hex"
    prefix: str = ""  # stripped from the header value before decoding
    signed: str = "{body}"
    timestamp_header: str = ""
    id_header: str = ""

    def __post_init__(self) -> None:
        for key in ("header", "timestamp_header", "id_header"):
            value = getattr(self, key)
            if (value or key == "header") and not _HEADER_NAME.fullmatch(value):
                raise InvalidField(key, f"not a valid header name: {show(value)}")
        if self.algorithm not in ALGORITHMS:
            raise InvalidField("algorithm", f"expected one of {', '.join(ALGORITHMS)}")
        if self.encoding not in ENCODINGS:
            raise InvalidField("encoding", f"expected one of {', '.join(ENCODINGS)}")
        if not _TYPE_PREFIX.fullmatch(self.prefix):
            raise InvalidField("prefix", "expected at most 64 visible ASCII characters")
        self._check_template()

    def _check_template(self) -> None:
        used = _PLACEHOLDER.findall(self.signed)
        for name in used:
            if name not in PLACEHOLDERS:
                allowed = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
                raise InvalidField("signed", f"unknown placeholder {{{name}}} (allowed: {allowed})")
        if used.count("body") != 1:
            raise InvalidField("signed", "must contain {body} exactly once")
        for placeholder, key in (("timestamp", "timestamp_header"), ("id", "id_header")):
            if placeholder in used and not getattr(self, key):
                raise InvalidField(key, f"required because signed uses {{{placeholder}}}")
            if getattr(self, key) and placeholder not in used:
                # An unsigned timestamp or id could be rewritten by anyone: no protection.
                problem = f"signed does not use {{{placeholder}}}, so it would not be authenticated"
                raise InvalidField(key, problem)


@dataclass(frozen=True, slots=True)
class TokenAuth:
    """A shared secret sent as is: in a header, or as the last path segment."""

    header: str = ""
    path_segment: bool = False

    def __post_init__(self) -> None:
        if bool(self.header) == self.path_segment:
            raise InvalidField("", "set exactly one of header or path_segment: true")
        if self.header and not _HEADER_NAME.fullmatch(self.header):
            raise InvalidField("header", f"not a valid header name: {show(self.header)}")


@dataclass(frozen=True, slots=True)
class Kind:
    """A source kind's defaults; None means the config must say."""

    key: FieldRef | None
    event_type: FieldRef | None
    ce_source: str | None
    ce_type_prefix: str
    needs_secrets: bool = True
    timestamped: bool = False  # its requests carry a signed timestamp: tolerance applies


def _header(name: str) -> FieldRef:
    return FieldRef("header", name)


def _body(path: str) -> FieldRef:
    return FieldRef("body", path)


KINDS: Final[Mapping[str, Kind]] = {
    "inboxcomponents": Kind(
        _body("idempotency_key"),
        _body("event"),
        "https://app.inboxcomponents.com",
        "com.inboxcomponents.",
        needs_secrets=False,
    ),
    # webhook-id also reads svix-id (see gateway.sources.standard_webhooks).
    "standard-webhooks": Kind(
        _header("webhook-id"), _body("type"), "urn:standard-webhooks", "", timestamped=True
    ),
    "github": Kind(
        _header("X-GitHub-Delivery"), _header("X-GitHub-Event"), "https://github.com", "com.github."
    ),
    "stripe": Kind(
        _body("id"), _body("type"), "https://stripe.com", "com.stripe.", timestamped=True
    ),
    "shopify": Kind(
        _header("X-Shopify-Webhook-Id"),
        _header("X-Shopify-Topic"),
        "https://shopify.com",
        "com.shopify.",
    ),
    "slack": Kind(
        _body("event_id"), _body("event.type"), "https://slack.com", "com.slack.", timestamped=True
    ),
    "generic-hmac": Kind(None, None, None, ""),  # timestamped if signature.timestamp_header
    "token": Kind(None, None, None, ""),
}
_TOKEN_KINDS: Final = ("token", "inboxcomponents")


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One source. The defaults are the inboxcomponents kind's (the original
    four-field form still means what it meant); the reader passes every field."""

    name: str
    kind: str
    path: str
    ce_source: str
    secrets: tuple[Secret, ...] = ()  # any one verifies: rotation
    tolerance: float = 300.0  # seconds, both directions
    key: FieldRef = FieldRef("body", "idempotency_key")
    event_type: FieldRef = FieldRef("body", "event")
    ce_type_prefix: str = "com.inboxcomponents."
    allow_ips: tuple[str, ...] = ()  # normalized CIDRs; empty = everyone
    signature: GenericSignature | None = None
    token: TokenAuth | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidField("kind", f"unknown kind {show(self.kind)}")
        if not self.path.startswith("/") or _BAD_PATH.search(self.path):
            problem = 'expected a path starting with "/", without "?", "#" or whitespace'
            raise InvalidField("path", f"{problem}, got {show(self.path)}")
        if not self.ce_source:
            raise InvalidField("ce_source", "expected a non-empty string")
        if not _TYPE_PREFIX.fullmatch(self.ce_type_prefix):
            raise InvalidField("ce_type_prefix", "expected at most 64 visible ASCII characters")
        if not self.tolerance > 0:
            raise InvalidField("tolerance", "must be greater than 0")
        for cidr in self.allow_ips:
            if not _is_network(cidr):
                raise InvalidField("allow_ips", f"not an IP network: {show(cidr)}")
        self._check_auth()

    def _check_auth(self) -> None:
        if (self.signature is None) == (self.kind == "generic-hmac"):
            problem = "only used by kind generic-hmac" if self.signature else "required"
            raise InvalidField("signature", f"{problem} (kind {self.kind})")
        if self.token is None and self.kind == "token":
            raise InvalidField("token", "required (kind token)")
        if self.token is not None and self.kind not in _TOKEN_KINDS:
            problem = f"only used by kinds token and inboxcomponents, not {self.kind}"
            raise InvalidField("token", problem)
        needed = KINDS[self.kind].needs_secrets or self.token is not None
        if needed and not self.secrets:
            raise InvalidField("secrets", f"required (kind {self.kind})")
        if self.secrets and not needed:
            raise InvalidField("secrets", "kind inboxcomponents uses secrets only with token:")

    @property
    def timestamped(self) -> bool:
        """Requests carry a signed timestamp, checked against `tolerance`."""
        return _timestamped(self.kind, self.signature)


def _timestamped(kind: str, signature: GenericSignature | None) -> bool:
    return KINDS[kind].timestamped or bool(signature and signature.timestamp_header)


def _is_network(cidr: str) -> bool:
    try:
        return str(ipaddress.ip_network(cidr, strict=False)) == cidr
    except ValueError:
        return False


# --- Reader ------------------------------------------------------------------


def _standard_webhooks_key(secret: bytes) -> bytes:
    # Imported only when such a secret is read: gateway.sources (every scheme, msgspec)
    # would otherwise load before the public port listens (gateway.listeners).
    from gateway.sources.standard_webhooks import signing_key

    return signing_key(secret)


_SOURCE_KEYS: Final = (
    *("kind", "path", "secrets", "tolerance", "key", "event_type", "ce_source"),
    *("ce_type_prefix", "allow_ips", "signature", "token"),
)
_SIGNATURE_KEYS: Final = (
    *("header", "algorithm", "encoding", "prefix", "signed", "timestamp_header", "id_header"),
)
# Kinds whose secrets have a format; the check's ValueError never quotes the secret.
_SECRET_FORMATS: Final[Mapping[str, Callable[[bytes], bytes]]] = {
    "standard-webhooks": _standard_webhooks_key,
}


def read_sources(node: object, env: Mapping[str, str]) -> tuple[SourceConfig, ...]:
    named = read_named(node, "sources")
    if not named:
        raise ConfigError("sources", "at least one source is required")
    sources: list[SourceConfig] = []
    for name, value in named.items():
        source = _source(name, value, f"sources.{name}", env)
        owner = next((other.name for other in sources if other.path == source.path), None)
        if owner is not None:
            problem = f"duplicate path, also used by sources.{owner}"
            raise ConfigError(f"sources.{name}.path", problem)
        sources.append(source)
    return tuple(sources)


def _source(name: str, node: object, path: str, env: Mapping[str, str]) -> SourceConfig:
    s = Section(node, path, _SOURCE_KEYS)
    kind_name = read_choice(s, "kind", REQUIRED, tuple(KINDS))
    kind = KINDS[kind_name]
    signature = _signature(s)
    try:
        source = SourceConfig(
            name=name,
            kind=kind_name,
            path=read_text(s, "path", REQUIRED),
            ce_source=read_text(s, "ce_source", kind.ce_source or REQUIRED),
            secrets=read_secrets(s.get("secrets", None), s.key_path("secrets"), env),
            tolerance=_tolerance(s, _timestamped(kind_name, signature)),
            key=_field_ref(s, "key", kind.key),
            event_type=_field_ref(s, "event_type", kind.event_type),
            ce_type_prefix=_string(s, "ce_type_prefix", kind.ce_type_prefix),
            allow_ips=_allow_ips(s),
            signature=signature,
            token=_token(s),
        )
    except InvalidField as exc:
        raise ConfigError(_at(path, exc.key), exc.problem) from None
    _check_secret_formats(source, s.key_path("secrets"))
    return source


def _check_secret_formats(source: SourceConfig, path: str) -> None:
    check = _SECRET_FORMATS.get(source.kind)
    if check is None:
        return
    for i, secret in enumerate(source.secrets):
        try:
            check(secret.reveal())
        except ValueError as exc:
            raise ConfigError(f"{path}[{i}]", str(exc)) from None


def _tolerance(s: Section, timestamped: bool) -> float:
    if "tolerance" in s.values and not timestamped:
        problem = "this source's requests carry no signed timestamp"
        raise ConfigError(s.key_path("tolerance"), problem)
    return read_duration(s, "tolerance", "5m")


def _field_ref(s: Section, key: str, default: FieldRef | None) -> FieldRef:
    if key not in s.values and default is not None:
        return default
    text = read_text(s, key, REQUIRED)
    try:
        return FieldRef.parse(text)
    except ValueError as exc:
        raise ConfigError(s.key_path(key), str(exc)) from None


def _string(s: Section, key: str, default: str) -> str:
    value = s.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(s.key_path(key), f"expected a string, got {show(value)}")
    return value


def _allow_ips(s: Section) -> tuple[str, ...]:
    value = s.get("allow_ips", None)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(s.key_path("allow_ips"), f"expected a list of CIDRs, got {show(value)}")
    networks: list[str] = []
    for i, item in enumerate(value):
        try:
            if not isinstance(item, str):
                raise TypeError
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except (TypeError, ValueError):
            hint = "use e.g. 192.0.2.0/24, 2001:db8::/32 or 203.0.113.7"
            where = f"{s.key_path('allow_ips')}[{i}]"
            raise ConfigError(where, f"not an IP network: {show(item)} ({hint})") from None
    return tuple(networks)


def _signature(s: Section) -> GenericSignature | None:
    node = s.get("signature", None)
    if node is None:
        return None
    g = Section(node, s.key_path("signature"), _SIGNATURE_KEYS)
    try:
        return GenericSignature(
            header=read_text(g, "header", REQUIRED),
            algorithm=read_choice(g, "algorithm", "sha256", ALGORITHMS),
            encoding=read_choice(g, "encoding", "hex", ENCODINGS),
            prefix=_string(g, "prefix", ""),
            signed=read_text(g, "signed", "{body}"),
            timestamp_header=_string(g, "timestamp_header", ""),
            id_header=_string(g, "id_header", ""),
        )
    except InvalidField as exc:
        raise ConfigError(_at(g.path, exc.key), exc.problem) from None


def _token(s: Section) -> TokenAuth | None:
    node = s.get("token", None)
    if node is None:
        return None
    t = Section(node, s.key_path("token"), ("header", "path_segment"))
    try:
        return TokenAuth(_string(t, "header", ""), read_bool(t, "path_segment", False))
    except InvalidField as exc:
        raise ConfigError(_at(t.path, exc.key), exc.problem) from None


def _at(path: str, key: str) -> str:
    return join_key(path, key) if key else path
