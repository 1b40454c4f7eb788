"""gateway.config_sources: the `sources:` section, its kind defaults and every error line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import Config, load, parse, redacted
from gateway.config_sources import (
    KINDS,
    FieldRef,
    GenericSignature,
    InvalidField,
    Secret,
    SourceConfig,
    TokenAuth,
)
from gateway.errors import ConfigError
from gateway.sources import BUILDERS, build_source

EXAMPLES = Path(__file__).resolve().parents[2] / "config" / "examples"
SECRET = "not-a-real-secret-but-long-enough"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks spec's example
ENV = {"WEBHOOK_SECRET": SECRET, "EMPTY": ""}
GENERIC: dict[str, Any] = {
    "kind": "generic-hmac",
    "secrets": [{"env": "WEBHOOK_SECRET"}],
    "key": "header:X-Id",
    "event_type": "body:type",
    "ce_source": "https://sender.example",
    "signature": {"header": "X-Signature"},
}


def config_with(source: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    doc = {
        "sources": {"s": {"path": "/webhooks/s", **source}},
        "targets": {"app": {"url": "http://127.0.0.1:3000/events"}},
        "routes": [{"source": "s", "targets": ["app"]}],
    }
    return parse(yaml.safe_dump(doc), ENV if env is None else env)


def source_with(source: dict[str, Any], env: dict[str, str] | None = None) -> SourceConfig:
    return config_with(source, env).sources[0]


def error_of(source: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        config_with(source, env)
    message = str(caught.value)
    assert "\n" not in message
    return message


def signed(kind: str = "github", **more: Any) -> dict[str, Any]:
    return {"kind": kind, "secrets": [{"env": "WEBHOOK_SECRET"}], **more}


# --- Defaults ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "key", "event_type", "ce_source", "prefix"),
    [
        (
            "inboxcomponents",
            "body:idempotency_key",
            "body:event",
            "https://app.inboxcomponents.com",
            "com.inboxcomponents.",
        ),
        ("standard-webhooks", "header:webhook-id", "body:type", "urn:standard-webhooks", ""),
        (
            "github",
            "header:X-GitHub-Delivery",
            "header:X-GitHub-Event",
            "https://github.com",
            "com.github.",
        ),
        ("stripe", "body:id", "body:type", "https://stripe.com", "com.stripe."),
        (
            "shopify",
            "header:X-Shopify-Webhook-Id",
            "header:X-Shopify-Topic",
            "https://shopify.com",
            "com.shopify.",
        ),
        ("slack", "body:event_id", "body:event.type", "https://slack.com", "com.slack."),
    ],
)
def test_each_kind_has_its_defaults(
    kind: str, key: str, event_type: str, ce_source: str, prefix: str
) -> None:
    env = {**ENV, "WEBHOOK_SECRET": WHSEC}
    fields = {"kind": kind} if kind == "inboxcomponents" else signed(kind)
    source = source_with(fields, env)
    assert (str(source.key), str(source.event_type)) == (key, event_type)
    assert (source.ce_source, source.ce_type_prefix) == (ce_source, prefix)
    assert (source.tolerance, source.allow_ips, source.signature, source.token) == (
        300.0,
        (),
        None,
        None,
    )


def test_the_four_field_form_is_an_inboxcomponents_source_with_its_defaults() -> None:
    assert SourceConfig(
        "s", "inboxcomponents", "/webhooks/s", KINDS["inboxcomponents"].ce_source or ""
    ) == (source_with({"kind": "inboxcomponents"}))


def test_a_generic_source_reads_every_field() -> None:
    source = source_with(
        {
            **GENERIC,
            "signature": {
                "header": "X-Signature",
                "algorithm": "SHA512",
                "encoding": "base64",
                "prefix": "sha512=",
                "signed": "{id}.{timestamp}.{body}",
                "timestamp_header": "X-Timestamp",
                "id_header": "X-Id",
            },
            "tolerance": "90s",
            "ce_type_prefix": "com.example.",
            "allow_ips": ["192.0.2.7/24", "2001:db8::1", "203.0.113.7"],
        }
    )
    assert source.signature == GenericSignature(
        "X-Signature",
        "sha512",
        "base64",
        "sha512=",
        "{id}.{timestamp}.{body}",
        "X-Timestamp",
        "X-Id",
    )
    assert (source.tolerance, source.ce_type_prefix, source.timestamped) == (
        90.0,
        "com.example.",
        True,
    )
    assert source.allow_ips == ("192.0.2.0/24", "2001:db8::1/128", "203.0.113.7/32")
    assert (source.key, source.event_type) == (FieldRef("header", "X-Id"), FieldRef("body", "type"))


def test_key_and_event_type_can_be_overridden() -> None:
    source = source_with(
        signed("stripe", key="header:Idempotency-Key", event_type="body:data.kind")
    )
    assert (str(source.key), str(source.event_type)) == ("header:Idempotency-Key", "body:data.kind")


def test_token_sources() -> None:
    by_header = source_with(
        {**GENERIC, "kind": "token", "signature": None, "token": {"header": "X-Webhook-Token"}}
    )
    assert by_header.token == TokenAuth("X-Webhook-Token")
    inbox = source_with(
        {
            "kind": "inboxcomponents",
            "secrets": [{"env": "WEBHOOK_SECRET"}],
            "token": {"path_segment": "true"},
        }
    )
    assert inbox.token == TokenAuth(path_segment=True)


def test_a_file_secret_loses_its_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(SECRET.encode() + b"\n")
    source = source_with(signed(secrets=[{"file": str(path)}, {"env": "WEBHOOK_SECRET"}]))
    assert [s.reveal() for s in source.secrets] == [SECRET.encode(), SECRET.encode()]
    assert [repr(s) for s in source.secrets] == [
        f"Secret(file:{path})",
        "Secret(env:WEBHOOK_SECRET)",
    ]


def test_secrets_show_only_their_origin_in_reprs_and_the_redacted_config(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("file-secret-value-1234\n")
    config = config_with(signed(secrets=[{"env": "WEBHOOK_SECRET"}, {"file": str(path)}]))
    for text in (repr(config), str(config.sources[0]), repr(build_source(config.sources[0]))):
        assert SECRET not in text
        assert "file-secret-value-1234" not in text
    plain = redacted(config)
    assert plain["sources"][0]["secrets"] == [  # type: ignore[index]
        "Secret(env:WEBHOOK_SECRET)",
        f"Secret(file:{path})",
    ]
    dumped = yaml.safe_dump(plain)  # still plain data
    assert SECRET not in dumped
    assert "file-secret-value-1234" not in dumped


def test_secrets_compare_by_origin_and_value() -> None:
    assert Secret("env:A", b"x") == Secret("env:A", b"x")
    assert Secret("env:A", b"x") != Secret("env:A", b"y")
    assert Secret("env:A", b"x") != Secret("env:B", b"x")
    assert len({Secret("env:A", b"x"), Secret("env:A", b"x")}) == 1
    with pytest.raises(ValueError, match="empty"):
        Secret("env:A", b"")


def test_every_kind_can_be_built() -> None:
    assert set(BUILDERS) == set(KINDS)


# --- Errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        # kind, path
        ({"kind": "gitlab"}, 'sources.s.kind: unknown kind "gitlab" (allowed: inboxcomponents, '
         "standard-webhooks, github, stripe, shopify, slack, generic-hmac, token)"),
        ({"kind": "inboxcomponents", "path": "/a b"}, 'sources.s.path: expected a path starting '
         'with "/", without "?", "#" or whitespace, got "/a b"'),
        ({"kind": "inboxcomponents", "colour": "red"}, "sources.s.colour: unknown key"),
        # secrets
        ({"kind": "github"}, "sources.s.secrets: required (kind github)"),
        (signed(secrets=[]), "sources.s.secrets: expected a list of {env: VAR} or {file: /path} "
         "entries"),
        (signed(secrets="hunter2-plain"), "sources.s.secrets: expected a list of {env: VAR} or "
         "{file: /path} entries"),
        (signed(secrets=["hunter2-plain"]), "sources.s.secrets[0]: secrets are never written "
         "inline; use {env: VAR} or {file: /path}"),
        (signed(secrets=[{}]), "sources.s.secrets[0]: expected exactly one of env: or file:"),
        (signed(secrets=[{"env": "A", "file": "/b"}]),
         "sources.s.secrets[0]: expected exactly one of env: or file:"),
        (signed(secrets=[{"value": "x"}]), "sources.s.secrets[0].value: unknown key"),
        (signed(secrets=[{"env": "NOT SET"}]),
         "sources.s.secrets[0].env: expected an environment variable name"),
        (signed(secrets=[{"env": "UNSET_VAR"}]),
         "sources.s.secrets[0]: environment variable UNSET_VAR is not set"),
        (signed(secrets=[{"env": "EMPTY"}]),
         "sources.s.secrets[0]: environment variable EMPTY is empty"),
        (signed(secrets=[{"env": "WEBHOOK_SECRET"}, {"file": "/nonexistent/secret"}]),
         "sources.s.secrets[1]: cannot read secret file /nonexistent/secret: No such file or "
         "directory"),
        (signed(secrets=[{"file": 3}]), "sources.s.secrets[0].file: expected a non-empty string, "
         "got 3"),
        ({"kind": "inboxcomponents", "secrets": [{"env": "WEBHOOK_SECRET"}]},
         "sources.s.secrets: kind inboxcomponents uses secrets only with token:"),
        (signed("standard-webhooks"), "sources.s.secrets[0]: not a Standard Webhooks secret "
         "(expected whsec_ followed by base64)"),
        # tolerance
        (signed("stripe", tolerance="soon"),
         'sources.s.tolerance: not a duration: "soon" (use e.g. 250ms, 10s, 24h)'),
        (signed("stripe", tolerance="0s"), 'sources.s.tolerance: must be greater than 0, got "0s"'),
        (signed("github", tolerance="5m"),
         "sources.s.tolerance: this source's requests carry no signed timestamp"),
        ({**GENERIC, "tolerance": "5m"},
         "sources.s.tolerance: this source's requests carry no signed timestamp"),
        # key, event_type, ce_source, ce_type_prefix
        (signed(key="query:id"),
         'sources.s.key: expected "header:<Name>" or "body:<dot.path>", got "query:id"'),
        (signed(key="header:"),
         'sources.s.key: expected "header:<Name>" or "body:<dot.path>", got "header:"'),
        (signed(key="header:X Id"),
         'sources.s.key: expected "header:<Name>" or "body:<dot.path>", got "header:X Id"'),
        (signed(event_type="body:a..b"),
         'sources.s.event_type: expected "header:<Name>" or "body:<dot.path>", got "body:a..b"'),
        (signed(event_type=""), 'sources.s.event_type: expected a non-empty string, got ""'),
        ({**GENERIC, "key": None},
         "sources.s.key: expected a non-empty string, got an empty value"),
        ({k: v for k, v in GENERIC.items() if k != "key"}, "sources.s.key: required key missing"),
        ({k: v for k, v in GENERIC.items() if k != "event_type"},
         "sources.s.event_type: required key missing"),
        ({k: v for k, v in GENERIC.items() if k != "ce_source"},
         "sources.s.ce_source: required key missing"),
        (signed(ce_type_prefix=7), "sources.s.ce_type_prefix: expected a string, got 7"),
        (signed(ce_type_prefix="com example."),
         "sources.s.ce_type_prefix: expected at most 64 visible ASCII characters"),
        # allow_ips
        (signed(allow_ips="10.0.0.0/8"),
         'sources.s.allow_ips: expected a list of CIDRs, got "10.0.0.0/8"'),
        (signed(allow_ips=["10.0.0.0/8", "10.0.0.0/33"]), 'sources.s.allow_ips[1]: not an IP '
         'network: "10.0.0.0/33" (use e.g. 192.0.2.0/24, 2001:db8::/32 or 203.0.113.7)'),
        (signed(allow_ips=[10]), "sources.s.allow_ips[0]: not an IP network: 10 (use e.g. "
         "192.0.2.0/24, 2001:db8::/32 or 203.0.113.7)"),
        # signature
        (signed(signature={"header": "X-Sig"}),
         "sources.s.signature: only used by kind generic-hmac (kind github)"),
        ({**GENERIC, "signature": None}, "sources.s.signature: required (kind generic-hmac)"),
        ({**GENERIC, "signature": {}}, "sources.s.signature.header: required key missing"),
        ({**GENERIC, "signature": {"header": "X Sig"}},
         'sources.s.signature.header: not a valid header name: "X Sig"'),
        ({**GENERIC, "signature": {"header": "X-Sig", "algorithm": "md5"}},
         'sources.s.signature.algorithm: unknown algorithm "md5" (allowed: sha256, sha512)'),
        ({**GENERIC, "signature": {"header": "X-Sig", "encoding": "base32"}},
         'sources.s.signature.encoding: unknown encoding "base32" (allowed: hex, base64)'),
        ({**GENERIC, "signature": {"header": "X-Sig", "prefix": "a b"}},
         "sources.s.signature.prefix: expected at most 64 visible ASCII characters"),
        ({**GENERIC, "signature": {"header": "X-Sig", "signed": "{timestamp}"}},
         "sources.s.signature.signed: must contain {body} exactly once"),
        ({**GENERIC, "signature": {"header": "X-Sig", "signed": "{body}{body}"}},
         "sources.s.signature.signed: must contain {body} exactly once"),
        ({**GENERIC, "signature": {"header": "X-Sig", "signed": "{ts}.{body}"}},
         "sources.s.signature.signed: unknown placeholder {ts} (allowed: {body}, {timestamp}, "
         "{id})"),
        ({**GENERIC, "signature": {"header": "X-Sig", "signed": "{timestamp}.{body}"}},
         "sources.s.signature.timestamp_header: required because signed uses {timestamp}"),
        ({**GENERIC, "signature": {"header": "X-Sig", "signed": "{id}.{body}"}},
         "sources.s.signature.id_header: required because signed uses {id}"),
        ({**GENERIC, "signature": {"header": "X-Sig", "timestamp_header": "X-Ts"}},
         "sources.s.signature.timestamp_header: signed does not use {timestamp}, so it would not "
         "be authenticated"),
        ({**GENERIC, "signature": {"header": "X-Sig", "salt": "x"}},
         "sources.s.signature.salt: unknown key"),
        ({**GENERIC, "signature": "X-Sig"}, 'sources.s.signature: expected a mapping, got "X-Sig"'),
        # token
        (signed(token={"header": "X-Token"}),
         "sources.s.token: only used by kinds token and inboxcomponents, not github"),
        ({**GENERIC, "kind": "token", "signature": None}, "sources.s.token: required (kind token)"),
        ({**GENERIC, "kind": "token", "signature": None, "token": {}},
         "sources.s.token: set exactly one of header or path_segment: true"),
        ({**GENERIC, "kind": "token", "signature": None,
          "token": {"header": "X-Token", "path_segment": True}},
         "sources.s.token: set exactly one of header or path_segment: true"),
        ({**GENERIC, "kind": "token", "signature": None, "token": {"header": "X:Token"}},
         'sources.s.token.header: not a valid header name: "X:Token"'),
        ({**GENERIC, "kind": "token", "signature": None, "token": {"path_segment": "yes"}},
         'sources.s.token.path_segment: expected true or false, got "yes"'),
        ({"kind": "token", "key": "header:X-Id", "event_type": "body:type", "ce_source": "urn:x",
          "token": {"header": "X-Token"}}, "sources.s.secrets: required (kind token)"),
        ({"kind": "inboxcomponents", "token": {"header": "X-Token"}},
         "sources.s.secrets: required (kind inboxcomponents)"),
    ],
)  # fmt: skip
def test_error_messages(source: dict[str, Any], message: str) -> None:
    assert error_of(source) == message


@pytest.mark.parametrize(
    "secrets",
    [["hunter2-plain-secret"], "hunter2-plain-secret", [{"env": "hunter2-plain-secret"}]],
)
def test_an_inline_secret_is_never_quoted_back(secrets: object) -> None:
    assert "hunter2" not in error_of(signed(secrets=secrets))


def test_a_malformed_standard_webhooks_secret_is_not_quoted_back() -> None:
    message = error_of(signed("standard-webhooks"), {"WEBHOOK_SECRET": "whsec_not base64!"})
    assert "not base64" not in message


def test_an_empty_or_oversized_secret_file_is_refused(tmp_path: Path) -> None:
    empty, huge = tmp_path / "empty", tmp_path / "huge"
    empty.write_text("\n")
    huge.write_bytes(b"x" * (64 << 10 | 1))
    assert error_of(signed(secrets=[{"file": str(empty)}])) == (
        f"sources.s.secrets[0]: secret file {empty} is empty"
    )
    assert error_of(signed(secrets=[{"file": str(huge)}])) == (
        f"sources.s.secrets[0]: secret file {huge} is larger than 64KiB"
    )


def test_two_sources_cannot_share_a_path() -> None:
    doc = {
        "sources": {
            "a": {"kind": "inboxcomponents", "path": "/x"},
            "b": {**signed(), "path": "/x"},
        }
    }
    with pytest.raises(
        ConfigError, match=r"^sources\.b\.path: duplicate path, also used by sources\.a$"
    ):
        parse(yaml.safe_dump(doc), ENV)


@pytest.mark.parametrize(
    ("build", "key", "problem"),
    [
        (lambda: SourceConfig("s", "nope", "/x", "urn:x"), "kind", 'unknown kind "nope"'),
        (lambda: SourceConfig("s", "github", "/x", "urn:x"), "secrets", "required (kind github)"),
        (lambda: SourceConfig("s", "inboxcomponents", "/x", "urn:x", tolerance=0), "tolerance",
         "must be greater than 0"),
        (lambda: SourceConfig("s", "inboxcomponents", "/x", "urn:x", allow_ips=("10.0.0.1/8",)),
         "allow_ips", 'not an IP network: "10.0.0.1/8"'),
        (lambda: SourceConfig("s", "inboxcomponents", "/x", ""), "ce_source",
         "expected a non-empty string"),
        (lambda: GenericSignature("X-Sig", algorithm="md5"), "algorithm",
         "expected one of sha256, sha512"),
        (lambda: GenericSignature("X-Sig", encoding="z85"), "encoding",
         "expected one of hex, base64"),
        (lambda: TokenAuth(), "", "set exactly one of header or path_segment: true"),
    ],
)  # fmt: skip
def test_invalid_values_cannot_be_constructed(build: Any, key: str, problem: str) -> None:
    with pytest.raises(InvalidField) as caught:
        build()
    assert (caught.value.key, caught.value.problem) == (key, problem)


def test_a_field_ref_must_name_a_header_or_a_body_path() -> None:
    assert FieldRef.parse("body:event.type") == FieldRef("body", "event.type")
    with pytest.raises(ValueError, match="expected"):
        FieldRef("cookie", "x")


# --- Shipped examples -------------------------------------------------------

KINDS_WITH_EXAMPLES = ["standard-webhooks", "github", "stripe", "shopify", "slack"]


@pytest.mark.parametrize("kind", KINDS_WITH_EXAMPLES)
def test_each_example_loads_with_its_secret_set(kind: str) -> None:
    config = load(EXAMPLES / f"{kind}.yaml", {"WEBHOOK_SECRET": WHSEC})
    (source,) = config.sources
    assert (source.name, source.kind, source.path) == (kind, kind, f"/webhooks/{kind}")
    assert source.secrets == (Secret("env:WEBHOOK_SECRET", WHSEC.encode()),)
    assert [(r.source, r.events, r.targets) for r in config.routes] == [(kind, ("*",), ("app",))]
    assert config.target("app").url == "http://127.0.0.1:3000/events"
    build_source(source)


@pytest.mark.parametrize("kind", KINDS_WITH_EXAMPLES)
def test_each_example_names_the_missing_secret(kind: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(EXAMPLES / f"{kind}.yaml", {})
    assert str(caught.value) == (
        f"sources.{kind}.secrets[0]: environment variable WEBHOOK_SECRET is not set"
    )


def test_the_examples_cover_every_signed_kind() -> None:
    assert sorted(p.stem for p in EXAMPLES.glob("*.yaml")) == sorted(KINDS_WITH_EXAMPLES)
