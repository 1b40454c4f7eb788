"""Canned HTTP responses, built once as bytes.

Every answer the listener gives is one `transport.write` of a prebuilt
status line, headers and short JSON body. A reply exists in two variants:
keep-alive and `Connection: close`, picked by the connection at write time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus

_SERVER = b"webhook-gateway"


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete response in both connection variants."""

    status: int
    keep_alive: bytes
    close: bytes


def build(
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"application/json",
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> Reply:
    phrase = HTTPStatus(status).phrase.encode()
    lines = [b"HTTP/1.1 %d %s" % (status, phrase), b"Server: " + _SERVER]
    lines += [b"Content-Type: " + content_type, b"Content-Length: %d" % len(body)]
    lines += [name + b": " + value for name, value in headers]
    head = b"\r\n".join(lines) + b"\r\n"
    return Reply(status, head + b"\r\n" + body, head + b"Connection: close\r\n\r\n" + body)


def problem(status: int, error: str, detail: str = "", **headers: str) -> Reply:
    """A JSON error body naming the problem: {"error": ..., "detail": ...}."""
    doc = {"error": error, "detail": detail} if detail else {"error": error}
    extra = tuple((k.replace("_", "-").encode(), v.encode()) for k, v in headers.items())
    return build(status, json.dumps(doc, separators=(",", ":")).encode(), headers=extra)


ACCEPTED = build(200, b'{"status":"accepted"}')
DUPLICATE = build(200, b'{"status":"duplicate"}')
NOT_FOUND = problem(404, "not_found", "no webhook source at this path")
UPGRADE_REFUSED = problem(400, "upgrade_not_supported", "protocol upgrades are not supported")
HEADERS_TOO_LARGE = problem(431, "headers_too_large", "the header block exceeds the limit")
BODY_TOO_LARGE = problem(413, "body_too_large", "the request body exceeds the limit")
REQUEST_TIMEOUT = problem(408, "request_timeout", "the request was not received in time")
UNSUPPORTED_VERSION = problem(
    400, "unsupported_http_version", "only HTTP/1.0 and HTTP/1.1 are served here"
)
BAD_TRANSFER_ENCODING = problem(
    400,
    "unsupported_transfer_encoding",
    "Transfer-Encoding must be exactly chunked, and only on HTTP/1.1",
)
INVALID_HOST = problem(400, "invalid_host", "an HTTP/1.1 request needs exactly one Host header")
INTERNAL_ERROR = problem(500, "internal_error", "the listener failed on this request")
STORE_UNAVAILABLE = problem(
    503, "store_unavailable", "the event could not be persisted; retry later", Retry_After="5"
)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def method_not_allowed(allow: str) -> Reply:
    return problem(405, "method_not_allowed", f"use {allow}", Allow=allow)
