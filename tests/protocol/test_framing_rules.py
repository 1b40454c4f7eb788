"""The pure rules behind the listener: framing checks, error names, deadlines."""

from __future__ import annotations

import pytest

from gateway import replies
from gateway.deadlines import Phase, due
from gateway.framing import Rejected, head, parser_error, path
from tests.protocol.conftest import TestLimits

HOST = (b"host", b"t")


@pytest.mark.parametrize(
    ("headers", "version", "expected"),
    [
        ([HOST, (b"content-length", b"12")], "1.1", (12, False)),
        ([HOST, (b"content-length", b"0   ")], "1.1", (0, False)),  # llhttp keeps trailing OWS
        ([HOST, (b"transfer-encoding", b"chunked")], "1.1", (0, False)),
        ([HOST, (b"transfer-encoding", b"Chunked ")], "1.1", (0, False)),  # codings are caseless
        ([HOST, (b"expect", b"100-Continue")], "1.1", (0, True)),
        ([HOST, (b"expect", b"something-else")], "1.1", (0, False)),
        ([(b"expect", b"100-continue")], "1.0", (0, False)),  # a 1.0 client gets no 100
        ([], "1.0", (0, False)),  # Host is HTTP/1.1's rule
    ],
)
def test_head_accepts(
    headers: list[tuple[bytes, bytes]], version: str, expected: tuple[int, bool]
) -> None:
    assert head(headers, version) == expected


@pytest.mark.parametrize(
    ("headers", "version", "reply"),
    [
        ([HOST], "0.9", replies.UNSUPPORTED_VERSION),
        ([HOST], "2.0", replies.UNSUPPORTED_VERSION),
        ([HOST, (b"transfer-encoding", b"gzip, chunked")], "1.1", replies.BAD_TRANSFER_ENCODING),
        ([HOST, (b"transfer-encoding", b"chunked")], "1.0", replies.BAD_TRANSFER_ENCODING),
        ([], "1.1", replies.INVALID_HOST),
        ([HOST, HOST], "1.1", replies.INVALID_HOST),
        ([HOST, HOST], "1.0", replies.INVALID_HOST),
    ],
)
def test_head_rejects(headers: list[tuple[bytes, bytes]], version: str, reply: object) -> None:
    with pytest.raises(Rejected) as rejected:
        head(headers, version)
    assert rejected.value.reply is reply


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        ("Content-Length can't be present with Transfer-Encoding", "conflicting_framing"),
        ("Duplicate Content-Length", "invalid_content_length"),
        ("Request has invalid `Transfer-Encoding`", "unsupported_transfer_encoding"),
        ("Invalid character in chunk size", "invalid_chunk"),
        ("Invalid HTTP version", "unsupported_http_version"),
        ("Pause on PRI/Upgrade", "unsupported_http_version"),
        ("Missing expected CR after header value", "invalid_header"),
        ("Unexpected whitespace after header value", "invalid_header"),
        ("Invalid method encountered", "malformed_http"),
        ("Expected CRLF after version", "malformed_http"),
    ],
)
def test_parser_errors_are_named_and_canned(reason: str, error: str) -> None:
    reply = parser_error(reason)
    assert reply.status == 400
    assert b'"error":"%s"' % error.encode() in reply.close
    assert parser_error(reason) is reply  # built once


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (b"/echo", "/echo"),
        (b"/echo?x=1", "/echo"),
        (b"http://h/echo?x=1", "/echo"),
        (b"*", "*"),  # no source has it: 404
    ],
)
def test_path_of_a_request_target(url: bytes, expected: str) -> None:
    assert path(url) == expected


LIMITS = TestLimits(header_timeout=10, body_timeout=5, request_timeout=30, keepalive_timeout=75)


@pytest.mark.parametrize(
    ("phase", "start", "last_read", "expected"),
    [
        (Phase.FRESH, 100.0, 100.0, 110.0),
        (Phase.IDLE, 100.0, 100.0, 175.0),
        (Phase.HEADERS, 100.0, 105.0, 110.0),  # reads do not extend a head's deadline
        (Phase.BODY, 100.0, 104.0, 109.0),  # a stall: 5 s after the last read
        (Phase.BODY, 100.0, 128.0, 130.0),  # a trickle: the whole request's deadline
        (Phase.BODY, 100.0, 90.0, 105.0),  # read while it waited behind another: not a stall
        (Phase.WAITING, 100.0, 100.0, None),
    ],
)
def test_each_phase_has_its_deadline(
    phase: Phase, start: float, last_read: float, expected: float | None
) -> None:
    assert due(phase, LIMITS, start, last_read) == expected  # type: ignore[arg-type]


def test_only_a_begun_request_is_answered_when_out_of_time() -> None:
    assert [p for p in Phase if p.answers] == [Phase.HEADERS, Phase.BODY]
