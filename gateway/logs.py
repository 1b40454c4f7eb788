"""structlog set-up: JSON lines on stdout, level-filtered, secrets redacted.

Redaction happens in one processor that every log line passes through, so no
call site has to remember it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import msgspec
import structlog

_SECRET_KEY = re.compile(
    r"pass(word)?|secret|token|authorization|signature|hmac|cookie|api[_-]?key", re.I
)
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]*:[^/@\s]*@")
REDACTED = "***"

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
LEVELS["error"] = logging.ERROR


def redact(value: Any, key: str = "") -> Any:
    """A copy of `value` with secret-looking keys and URL passwords masked."""
    if key and _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        return _URL_CREDENTIALS.sub(REDACTED + "@", value)
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def redact_processor(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        event_dict[key] = redact(value, key)
    return event_dict


_encode = msgspec.json.Encoder(enc_hook=str).encode


def _serialize(event_dict: Any, **_: Any) -> bytes:
    return _encode(event_dict)


def configure(level: str = "info") -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            structlog.processors.JSONRenderer(serializer=_serialize),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.BytesLoggerFactory(sys.stdout.buffer),
        cache_logger_on_first_use=True,
    )
