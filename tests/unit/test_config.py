"""gateway.config: the shipped file, interpolation, parsers and every error message."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import (
    Backoff,
    Config,
    ForwarderConfig,
    Limits,
    Listen,
    RouteConfig,
    SourceConfig,
    SpoolConfig,
    StoreConfig,
    TargetConfig,
    load,
    parse,
    parse_duration,
    parse_size,
    redacted,
    risks,
)
from gateway.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "gateway.yaml"

# The smallest valid config; everything else comes from the code's defaults.
BASE: dict[str, Any] = {
    "sources": {"inbox": {"kind": "inboxcomponents", "path": "/webhooks/inbox"}},
    "targets": {"app": {"url": "http://127.0.0.1:3000/events"}},
    "routes": [{"source": "inbox", "targets": ["app"]}],
}

DEFAULTS = Config(
    listen=Listen("0.0.0.0", 8080),
    admin=Listen("0.0.0.0", 9102),
    limits=Limits(max_body=1 << 20, max_header=16 << 10, max_pipelined=32, max_connections=10000),
    shutdown_grace=10.0,
    store=StoreConfig(
        url="redis://127.0.0.1:6379/0",
        dedup_ttl=86400.0,
        admit_deadline=2.0,
        partitions=1,
        key_prefix="gw",
        pool_size=32,
        socket_timeout=1.0,
        connect_timeout=1.0,
        spool=SpoolConfig(enabled=True, max_size=256 * 1024 * 1024, wait_for_redis=0.5),
    ),
    sources=(
        SourceConfig(
            "inboxcomponents",
            "inboxcomponents",
            "/webhooks/inbox",
            "https://app.inboxcomponents.com",
        ),
    ),
    targets=(
        TargetConfig(
            name="app",
            url="http://127.0.0.1:3000/events",
            host="127.0.0.1",
            port=3000,
            path="/events",
            format="cloudevents-binary",
            connect_timeout=1.0,
            timeout=10.0,
            concurrency=64,
            max_attempts=10,
            backoff=Backoff(1.0, 600.0),
            headers=(),
        ),
    ),
    routes=(RouteConfig("inboxcomponents", ("*",), ("app",)),),
    unrouted=None,
    data_dir="./data",
    log_level="info",
    forwarder=ForwarderConfig(enabled=True, visibility_timeout=60.0, batch=100, consumer=""),
    workers=1,
)

DELETE: Any = object()


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` merged in recursively; a value of DELETE removes the key."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def config_with(changes: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    return parse(yaml.safe_dump(merged(BASE, changes)), env or {})


def error_of(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, env or {})
    return str(info.value)


# --- The shipped reference file ---------------------------------------------


def test_shipped_config_loads_with_documented_defaults() -> None:
    assert load(SHIPPED, {}) == DEFAULTS


def test_shipped_config_spells_out_the_code_defaults() -> None:
    # The file is the reference users read: it must agree with what the code assumes.
    minimal = merged(BASE, {"sources": {"inbox": DELETE}})
    minimal["sources"]["inboxcomponents"] = {"kind": "inboxcomponents", "path": "/webhooks/inbox"}
    minimal["routes"] = [{"source": "inboxcomponents", "targets": ["app"]}]
    assert parse(yaml.safe_dump(minimal), {}) == load(SHIPPED, {})


def test_shipped_config_applies_environment_overrides() -> None:
    env = {
        "GATEWAY_PORT": "9000",
        "GATEWAY_ADMIN_PORT": "9001",
        "STORE_URL": "redis://:secret@redis:6380/2",
        "FORWARD_URL": "http://app:8000/hooks?x=1",
        "FORWARD_MAX_ATTEMPTS": "3",
        "FORWARD_BACKOFF_INITIAL": "250ms",
        "FORWARD_BACKOFF_MAX": "1h",
        "DEDUP_TTL": "2d",
        "GATEWAY_DATA_DIR": "/var/lib/gateway",
        "LOG_LEVEL": "DEBUG",
    }
    config = load(str(SHIPPED), env)
    app = config.target("app")
    assert (config.listen.port, config.admin.port) == (9000, 9001)
    assert config.store.url == "redis://:secret@redis:6380/2"
    assert config.store.dedup_ttl == 2 * 86400
    assert (app.url, app.host, app.port, app.path) == (
        env["FORWARD_URL"],
        "app",
        8000,
        "/hooks?x=1",
    )
    assert (app.max_attempts, app.backoff) == (3, Backoff(0.25, 3600.0))
    assert (config.data_dir, config.log_level) == ("/var/lib/gateway", "debug")


def test_empty_variables_fall_back_to_defaults() -> None:
    assert load(SHIPPED, {"GATEWAY_PORT": "", "LOG_LEVEL": ""}) == DEFAULTS


# --- Interpolation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("${DIR}", {"DIR": "/srv"}, "/srv"),
        ("${DIR:-/tmp}", {}, "/tmp"),
        ("${DIR:-/tmp}", {"DIR": ""}, "/tmp"),  # like the shell: empty counts as unset
        ("${DIR:-/tmp}", {"DIR": "/srv"}, "/srv"),
        ("${DIR:-}x", {}, "x"),
        ("a$$b", {}, "a$b"),
        ("$$${DIR}", {"DIR": "x"}, "$x"),
        ("$HOME", {"HOME": "/root"}, "$HOME"),  # only the braced form is a reference
        ("${A}${B}", {"A": "/x", "B": "${A}"}, "/x${A}"),  # values are not re-expanded
    ],
)
def test_interpolation(value: str, env: dict[str, str], expected: str) -> None:
    assert config_with({"data_dir": value}, env).data_dir == expected


def test_unset_variable_names_path_and_variable() -> None:
    text = yaml.safe_dump(merged(BASE, {"store": {"url": "${STORE_URL}"}}))
    assert error_of(text) == "store.url: environment variable STORE_URL is not set"


def test_unset_variable_in_a_list_names_the_index() -> None:
    routes = [{"source": "inbox", "targets": ["app"], "events": ["a", "${EVENT}"]}]
    text = yaml.safe_dump(merged(BASE, {"routes": routes}))
    assert error_of(text) == "routes[0].events[1]: environment variable EVENT is not set"


def test_malformed_reference_is_an_error() -> None:
    text = yaml.safe_dump(merged(BASE, {"data_dir": "${DIR"}))
    assert error_of(text) == (
        'data_dir: malformed variable reference in "${DIR" '
        "(use ${VAR}, ${VAR:-default}, or $$ for a literal $)"
    )


def test_interpolated_strings_satisfy_typed_fields() -> None:
    changes = {
        "listen": {"port": "${P:-1234}"},
        "limits": {"max_body": "${B:-2MiB}", "max_pipelined": "${N:-4}"},
        "forwarder": {"enabled": "${F:-false}"},
    }
    config = config_with(changes)
    assert (config.listen.port, config.limits.max_body) == (1234, 2 << 20)
    assert (config.limits.max_pipelined, config.forwarder.enabled) == (4, False)


# --- Durations and sizes ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("10s", 10.0),
        ("1.5s", 1.5),
        ("10m", 600.0),
        ("24h", 86400.0),
        ("2d", 172800.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10", "5 minutes", "-1s", "", "1.s", "s", "10 s", "1h30m", "1S"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 0),
        (4096, 4096),
        ("512", 512),
        ("512B", 512),
        ("64KiB", 65536),
        ("1MiB", 1 << 20),
        ("1GiB", 1 << 30),
        ("10KB", 10000),
        ("1MB", 1000000),
        ("2GB", 2 * 10**9),
        ("1mib", 1 << 20),
    ],
)
def test_parse_size(value: str | int, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["", "1 MiB", "1.5MiB", "-1", "1TiB", "MiB", -1, True])
def test_parse_size_rejects(value: str | int) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(value)


# --- Error messages ---------------------------------------------------------

ROUTE = {"source": "inbox", "targets": ["app"]}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # Unknown keys, at the top and nested.
        ({"colour": "red"}, "colour: unknown key"),
        ({"sources": {"inbox": {"colour": "red"}}}, "sources.inbox.colour: unknown key"),
        ({"targets": {"app": {"backoff": {"min": "1s"}}}}, "targets.app.backoff.min: unknown key"),
        ({"routes": [{**ROUTE, "event": ["a"]}]}, "routes[0].event: unknown key"),
        # Wrong types.
        ({"listen": "0.0.0.0:80"}, 'listen: expected a mapping, got "0.0.0.0:80"'),
        ({"listen": {"port": "abc"}}, 'listen.port: expected an integer 1-65535, got "abc"'),
        ({"listen": {"port": True}}, "listen.port: expected an integer 1-65535, got true"),
        ({"listen": {"port": 80.5}}, "listen.port: expected an integer 1-65535, got 80.5"),
        ({"listen": {"host": ""}}, 'listen.host: expected a non-empty string, got ""'),
        ({"forwarder": {"enabled": "yes"}}, 'forwarder.enabled: expected true or false, got "yes"'),
        (
            {"clients": {"rate_limit": "fast"}},
            'clients.rate_limit: expected requests per second (0 = no limit), got "fast"',
        ),
        (
            {"clients": {"trusted_hops": 99}},
            "clients.trusted_hops: expected an integer 0-16, got 99",
        ),
        (
            {"listen": {"tls": {"cert": "/etc/hostname"}}},
            "listen.tls: set both cert and key, or neither",
        ),
        (
            {"listen": {"tls": {"cert": "/etc/hostname", "key": "/no/such.key"}}},
            'listen.tls.key: no such file: "/no/such.key"',
        ),
        (
            {"forwarder": {"visibility_timeout": "5s"}},
            "forwarder.visibility_timeout: must be longer than the longest target timeout (10s)",
        ),
        (
            {"forwarder": {"consumer": "Bad Name"}},
            'forwarder.consumer: must match [a-z0-9][a-z0-9_-]{0,63}, got "Bad Name"',
        ),
        ({"routes": {"source": "inbox"}}, "routes: expected a list, got a mapping"),
        ({"routes": ["inbox"]}, 'routes[0]: expected a mapping, got "inbox"'),
        ({"data_dir": None}, "data_dir: expected a non-empty string, got an empty value"),
        # Out of range.
        ({"listen": {"port": 70000}}, "listen.port: expected an integer 1-65535, got 70000"),
        ({"admin": {"port": -1}}, "admin.port: expected an integer 1-65535, got -1"),
        (
            {"store": {"partitions": "2000"}},
            'store.partitions: expected an integer 1-1024, got "2000"',
        ),
        ({"limits": {"max_pipelined": 0}}, "limits.max_pipelined: expected an integer >= 1, got 0"),
        ({"workers": 0}, "workers: expected an integer 1-64, got 0"),
        (
            {"workers": 2, "store": {"url": "sqlite:///data/gateway.db"}},
            "workers: the SQLite store supports one process only; use workers: 1 or a Redis store",
        ),
        (
            {"store": {"spool": {"wait_for_redis": "2s"}}},
            "store.spool.wait_for_redis: must be shorter than store.admit_deadline (2s)",
        ),
        (
            {"store": {"wait_timeout": "3s"}},
            "store.wait_timeout: must be shorter than store.admit_deadline (2s)",
        ),
        (
            {"store": {"wait_replicas": 99}},
            "store.wait_replicas: expected an integer 0-16, got 99",
        ),
        (
            {"store": {"spool": {"max_size": "lots"}}},
            'store.spool.max_size: not a size: "lots" (use e.g. 512, 64KiB, 1MiB)',
        ),
        (
            {"store": {"spool": {"enabled": "maybe"}}},
            'store.spool.enabled: expected true or false, got "maybe"',
        ),
        # URLs.
        ({"targets": {"app": {"url": "htp:/x"}}}, 'targets.app.url: not a URL: "htp:/x"'),
        (
            {"targets": {"app": {"url": "http://h:99999/"}}},
            'targets.app.url: not a URL: "http://h:99999/"',
        ),
        (
            {"targets": {"app": {"url": "https://app/events"}}},
            "targets.app.url: only http:// targets are supported (TLS to a localhost app is "
            'out of scope), got "https://app/events"',
        ),
        (
            {"store": {"url": "http://:pw@redis:6379"}},
            'store.url: not a store URL: "http://:***@redis:6379" '
            "(use redis://host:port/db, rediss://, unix:///path/to/socket or sqlite:///file.db)",
        ),
        # Durations and sizes.
        (
            {"store": {"dedup_ttl": "5 minutes"}},
            'store.dedup_ttl: not a duration: "5 minutes" (use e.g. 250ms, 10s, 24h)',
        ),
        ({"shutdown_grace": 10}, "shutdown_grace: not a duration: 10 (use e.g. 250ms, 10s, 24h)"),
        ({"shutdown_grace": "0s"}, 'shutdown_grace: must be greater than 0, got "0s"'),
        (
            {"limits": {"max_body": "1 MB"}},
            'limits.max_body: not a size: "1 MB" (use e.g. 512, 64KiB, 1MiB)',
        ),
        # Sources.
        ({"sources": DELETE}, "sources: required key missing"),
        ({"sources": {"inbox": DELETE}}, "sources: at least one source is required"),
        ({"sources": {"inbox": {"kind": DELETE}}}, "sources.inbox.kind: required key missing"),
        (
            {"sources": {"inbox": {"kind": "gitlab"}}},
            'sources.inbox.kind: unknown kind "gitlab" (allowed: inboxcomponents, '
            "standard-webhooks, github, stripe, shopify, slack, generic-hmac, token)",
        ),
        (
            {"sources": {"inbox": {"path": "webhooks"}}},
            'sources.inbox.path: expected a path starting with "/", without "?", "#" or '
            'whitespace, got "webhooks"',
        ),
        (
            {"sources": {"other": {"kind": "inboxcomponents", "path": "/webhooks/inbox"}}},
            "sources.other.path: duplicate path, also used by sources.inbox",
        ),
        (
            {"sources": {"Inbox": {"kind": "inboxcomponents", "path": "/x"}}},
            'sources.Inbox: invalid name (use a-z, 0-9, "_" and "-", starting with a letter or '
            "digit, at most 64)",
        ),
        # Targets.
        ({"targets": {"app": {"url": DELETE}}}, "targets.app.url: required key missing"),
        (
            {"targets": {"app": {"format": "json"}}},
            'targets.app.format: unknown format "json" '
            "(allowed: cloudevents-binary, cloudevents-structured, raw)",
        ),
        (
            {"targets": {"app": {"backoff": {"initial": "1m", "max": "30s"}}}},
            "targets.app.backoff.max: backoff.max must be >= backoff.initial",
        ),
        (
            {"targets": {"app": {"headers": {"X Token": "a"}}}},
            "targets.app.headers.X Token: not a valid header name",
        ),
        (
            {"targets": {"app": {"headers": {"X-Token": "a\r\nInjected: 1"}}}},
            "targets.app.headers.X-Token: header value must not contain CR, LF or control "
            "characters",
        ),
        (
            {"targets": {"app": {"headers": {"Content-Length": "1"}}}},
            "targets.app.headers.Content-Length: set by the gateway itself, cannot be configured",
        ),
        # Routes and unrouted.
        (
            {"routes": [{"source": "inbox", "targets": ["app", "x"]}]},
            'routes[0].targets[1]: unknown target "x"',
        ),
        (
            {"routes": [ROUTE, {"source": "inbox", "targets": ["app", "app"]}]},
            'routes[1].targets[1]: duplicate target "app"',
        ),
        (
            {"routes": [{"source": "github", "targets": ["app"]}]},
            'routes[0].source: unknown source "github"',
        ),
        ({"routes": [{"source": "inbox"}]}, "routes[0].targets: required key missing"),
        (
            {"routes": [{**ROUTE, "events": []}]},
            "routes[0].events: expected a non-empty list, got an empty list",
        ),
        ({"unrouted": "x"}, 'unrouted: unknown target "x" (use "drop" or a target name)'),
        (
            {"log_level": "verbose"},
            'log_level: unknown log level "verbose" (allowed: debug, info, warning, error)',
        ),
        (
            {"store": {"key_prefix": "my prefix"}},
            'store.key_prefix: expected 1-32 of A-Z a-z 0-9 _ . -, got "my prefix"',
        ),
    ],
)
def test_error_messages(changes: dict[str, Any], message: str) -> None:
    assert error_of(yaml.safe_dump(merged(BASE, changes))) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "listen:\n  port: [1\n",
            "invalid YAML at line 3 column 1: expected ',' or ']', but got '<stream end>'",
        ),
        ("a: b: c\n", "invalid YAML at line 1 column 5: mapping values are not allowed here"),
        ("listen: {}\nlisten: {}\n", 'invalid YAML at line 2 column 1: duplicate key "listen"'),
        ("- listen\n", "the config file must be a mapping"),
        ("", "the config file must be a mapping"),
        ("just text", "the config file must be a mapping"),
    ],
)
def test_document_errors(text: str, message: str) -> None:
    assert error_of(text) == message


@pytest.mark.parametrize(
    "text",
    [
        "a: 2024-13-45\n",  # PyYAML raises ValueError for impossible dates
        "x: !!python/object/apply:os.system [echo]\n",
        "\x00",
        "[" * 5000 + "]" * 5000,
        "a: &a [*a]\nsources: *a\n",
        "sources: {inbox: [1]}\n",
        "sources: {inbox: {kind: [x], path: /x}}\n",
        "targets: {app: {url: http://a, headers: [1]}}\n",
        "targets: {app: {url: 'http://[::1'}}\n",
        "listen: {port: '" + "9" * 5000 + "'}\n",
        "{[1]: 2}\n",
    ],
)
def test_only_config_errors_escape(text: str) -> None:
    with pytest.raises(ConfigError):
        parse(text, {})


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load(path, {})
    assert str(info.value) == f"cannot read config file {path}: No such file or directory"
    assert info.value.path == ""


def test_undecodable_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"data_dir: caf\xe9\n")
    with pytest.raises(
        ConfigError, match=r"^cannot read config file .*latin1\.yaml: 'utf-8' codec"
    ):
        load(path, {})


# --- The result ---------------------------------------------------------------


def test_target_url_parts_and_defaults() -> None:
    config = config_with(
        {"targets": {"app": {"url": "http://[::1]"}, "b": {"url": "http://B?q=1"}}}
    )
    assert (config.target("app").host, config.target("app").port, config.target("app").path) == (
        "::1",
        80,
        "/",
    )
    assert (config.target("b").host, config.target("b").path) == ("b", "/?q=1")


def test_lookups_and_immutability() -> None:
    config = config_with({})
    assert config.source("inbox").ce_source == "https://app.inboxcomponents.com"
    with pytest.raises(KeyError):
        config.target("missing")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.listen.port = 1  # type: ignore[misc]


def test_optional_sections_and_port_zero() -> None:
    config = config_with(
        {"targets": DELETE, "routes": DELETE, "listen": {"port": 0}, "admin": {"port": "0"}}
    )
    assert (config.targets, config.routes, config.unrouted) == ((), (), None)
    assert (config.listen.port, config.admin.port) == (0, 0)


def test_unrouted_target_and_events() -> None:
    route = {"source": "inbox", "events": ["message.*", "thread.created"], "targets": ["app"]}
    config = config_with({"routes": [route], "unrouted": "app"})
    assert config.routes[0].events == ("message.*", "thread.created")
    assert config.unrouted == "app"


# --- Redaction ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h/0", "redis://:***@h/0"),
        ("redis://user:pw@h", "redis://user:***@h"),
        ("rediss://user:p@ss:w@h:6380/1", "rediss://user:***@h:6380/1"),
        ("unix:///run/redis.sock?db=0&password=pw", "unix:///run/redis.sock?db=0&password=***"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_redacted_hides_store_passwords(url: str, shown: str) -> None:
    plain = redacted(config_with({"store": {"url": url}}))
    assert plain["store"]["url"] == shown  # type: ignore[index]


def test_redacted_hides_target_header_values() -> None:
    headers = {"Authorization": "Bearer s3cret", "X-Tenant": "acme"}
    plain = redacted(config_with({"targets": {"app": {"headers": headers}}}))
    assert plain["targets"][0]["headers"] == {"Authorization": "***", "X-Tenant": "***"}  # type: ignore[index]
    assert "s3cret" not in repr(plain)
    assert "acme" not in repr(plain)


def test_redacted_is_plain_data() -> None:
    plain = redacted(load(SHIPPED, {}))
    assert plain["listen"] == {"host": "0.0.0.0", "port": 8080, "tls_cert": "", "tls_key": ""}
    assert plain["routes"] == [{"source": "inboxcomponents", "events": ["*"], "targets": ["app"]}]
    assert yaml.safe_dump(plain)  # only plain types: dict, list, str, int, float, bool, None


def test_a_visibility_timeout_short_of_twice_the_slowest_target_is_reported_as_a_risk() -> None:
    # A live delivery can hold an entry for its timeout in the ready queue, its
    # timeout in flight, then its ack: reclaimed sooner, it is sent twice.
    tight = config_with({"forwarder": {"visibility_timeout": "20s"}})  # target timeout 10s
    (risk,) = risks(tight)
    assert risk.startswith("forwarder.visibility_timeout 20s is under")
    assert "(25s)" in risk
    assert risks(config_with({"forwarder": {"visibility_timeout": "25s"}})) == []
    assert risks(config_with({"forwarder": {"enabled": False, "visibility_timeout": "20s"}})) == []
