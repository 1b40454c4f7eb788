"""The one redaction processor every log line passes through."""

from __future__ import annotations

import io
import json

import structlog

from gateway.logs import REDACTED, configure, redact


def test_secret_looking_keys_are_masked_at_any_depth() -> None:
    event = {
        "authorization": "Bearer abc",
        "config": {"secrets": ["s3cr3t"], "headers": {"X-Api-Key": "k"}, "port": 80},
        "webhook_signature": "v1,xyz",
        "Password": "p",
    }
    clean = redact(event)
    assert clean["authorization"] == REDACTED
    assert clean["config"]["secrets"] == REDACTED
    assert clean["config"]["headers"]["X-Api-Key"] == REDACTED
    assert clean["config"]["port"] == 80
    assert clean["webhook_signature"] == REDACTED
    assert clean["Password"] == REDACTED


def test_passwords_in_urls_are_masked_in_any_string() -> None:
    text = "cannot connect to redis://user:hunter2@redis:6379/0 (and rediss://:pw@h)"
    assert redact(text) == "cannot connect to redis://***@redis:6379/0 (and rediss://***@h)"


def test_configured_logger_writes_json_lines_without_the_secret(monkeypatch: object) -> None:
    out = io.BytesIO()

    class Buffered:
        buffer = out

    import gateway.logs as logs

    original = logs.sys.stdout
    logs.sys.stdout = Buffered()  # type: ignore[assignment]
    try:
        configure("info")
        structlog.get_logger("t").warning("hello", token="tok-123", url="redis://:pw@h:1/0")
        structlog.get_logger("t").debug("filtered out at info")
    finally:
        logs.sys.stdout = original
        structlog.reset_defaults()
    lines = out.getvalue().decode().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "hello"
    assert record["token"] == REDACTED
    assert record["url"] == "redis://***@h:1/0"
    assert "tok-123" not in lines[0]
    assert "pw" not in lines[0]


def test_the_session_secrecy_check_finds_a_leak() -> None:
    from tests.support import secrecy

    secrecy.remember("leaky-secret-value", b"short")
    secrecy.GATEWAY_LOGS.append('{"event":"oops","detail":"leaky-secret-value"}')
    try:
        assert secrecy.leaks() == ["leaky-secret-value"]
    finally:
        secrecy.GATEWAY_LOGS.pop()
        secrecy.SENT_SECRETS.discard("leaky-secret-value")
    assert "leaky-secret-value" not in secrecy.leaks()
