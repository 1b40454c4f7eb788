"""Secrets the tests use, and every gateway log the session produced.

Tests register each secret, signature and Authorization value they send;
at the end of the session the captured logs of every gateway process are
searched for them (see the `logs_hold_no_secrets` fixture in conftest.py).
"""

from __future__ import annotations

SENT_SECRETS: set[str] = set()
GATEWAY_LOGS: list[str] = []


def remember(*values: str | bytes) -> None:
    for value in values:
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        if len(text) >= 8:  # short strings would match by accident
            SENT_SECRETS.add(text)


def leaks() -> list[str]:
    return sorted({secret for secret in SENT_SECRETS for log in GATEWAY_LOGS if secret in log})
