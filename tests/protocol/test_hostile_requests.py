"""Hostile requests as raw bytes: each gets one JSON error and never a 200.

`ours` marks the cases httptools (llhttp) lets through and gateway.framing
rejects; the rest llhttp rejects by itself and the listener names the error.
"""

from __future__ import annotations

import pytest

from tests.protocol.conftest import Dial, Server
from tests.protocol.wire import HEAD
from tests.support.rawhttp import post

H = HEAD  # "POST /echo HTTP/1.1", "Host: t"
END = b"Content-Length: 0\r\n\r\n"
TE = b"Transfer-Encoding: "
CHUNKED = H + TE + b"chunked\r\n\r\n"
LAST = b"0\r\n\r\n"


def line(request_line: bytes, rest: bytes = b"Host: t\r\n" + END) -> bytes:
    return request_line + b"\r\n" + rest


# Each is a 400 naming `error`, then close.
BAD_REQUESTS: dict[str, list[tuple[str, bytes]]] = {
    "conflicting_framing": [
        ("cl_then_te", H + b"Content-Length: 4\r\n" + TE + b"chunked\r\n\r\n" + LAST),
        ("te_then_cl", H + TE + b"chunked\r\nContent-Length: 4\r\n\r\n" + LAST),
        ("cl_in_trailer", CHUNKED + b"2\r\n{}\r\n0\r\nContent-Length: 5\r\n\r\n"),
    ],
    "invalid_content_length": [
        ("cl_repeated_same", H + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}"),
        ("cl_repeated_different", H + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}x"),
        ("cl_list", H + b"Content-Length: 2, 2\r\n\r\n{}"),
        ("cl_negative", H + b"Content-Length: -1\r\n\r\n"),
        ("cl_plus_sign", H + b"Content-Length: +2\r\n\r\n{}"),
        ("cl_not_a_number", H + b"Content-Length: abc\r\n\r\n"),
        ("cl_hex", H + b"Content-Length: 0x2\r\n\r\n{}"),
        ("cl_empty", H + b"Content-Length: \r\n\r\n"),
        ("cl_overflow", H + b"Content-Length: 99999999999999999999999\r\n\r\n"),
    ],
    "unsupported_transfer_encoding": [
        ("te_chunked_gzip", H + TE + b"chunked, gzip\r\n\r\n" + LAST),
        ("te_gzip_chunked_ours", H + TE + b"gzip, chunked\r\n\r\n" + LAST),
        ("te_gzip", H + TE + b"gzip\r\n\r\n"),
        ("te_xchunked", H + TE + b"xchunked\r\n\r\n" + LAST),
        ("te_chunkedx", H + TE + b"chunkedx\r\n\r\n" + LAST),
        ("te_identity", H + TE + b"identity\r\n\r\n"),
        ("te_empty", H + TE + b"\r\n\r\n"),
        ("te_repeated", H + TE + b"chunked\r\n" + TE + b"chunked\r\n\r\n" + LAST),
        (
            "te_on_http_1_0_ours",
            line(b"POST /echo HTTP/1.0", b"Host: t\r\n" + TE + b"chunked\r\n\r\n" + LAST),
        ),
    ],
    "invalid_chunk": [
        ("chunk_size_not_hex", CHUNKED + b"zz\r\nab\r\n" + LAST),
        ("chunk_size_negative", CHUNKED + b"-1\r\nab\r\n" + LAST),
        ("chunk_size_0x", CHUNKED + b"0x2\r\nab\r\n" + LAST),
        ("chunk_size_overflow", CHUNKED + b"1ffffffffffffffff\r\nab\r\n" + LAST),
        ("chunk_size_then_space", CHUNKED + b"2 \r\nab\r\n" + LAST),
        ("chunk_size_empty", CHUNKED + b"\r\nab\r\n" + LAST),
        ("chunk_data_overruns", CHUNKED + b"2\r\nabX" + LAST),
        ("chunk_bare_lf", CHUNKED + b"2\nab\n0\n\n"),
    ],
    "invalid_header": [
        ("te_vertical_tab", H + TE + b"\x0bchunked\r\n\r\n" + LAST),
        ("obs_fold_space", H + b"X-A: b\r\n c\r\n" + END),
        ("obs_fold_tab", H + b"X-A: b\r\n\tc\r\n" + END),
        ("first_header_folded", line(b"POST /echo HTTP/1.1", b" Host: t\r\n" + END)),
        ("nul_in_value", H + b"X-A: b\x00c\r\n" + END),
        ("nul_in_name", H + b"X-\x00A: b\r\n" + END),
        ("control_in_value", H + b"X-A: b\x01c\r\n" + END),
        ("del_in_value", H + b"X-A: b\x7fc\r\n" + END),
        ("bare_cr_in_value", H + b"X-A: b\rc\r\n" + END),
        ("bare_cr_ends_line", b"POST /echo HTTP/1.1\r\nHost: t\r" + END),
        ("bare_lf_ends_line", b"POST /echo HTTP/1.1\r\nHost: t\n" + END),
        ("bare_lf_ends_head", H + b"Content-Length: 0\r\n\n"),
        ("space_before_colon", H + b"Content-Length : 0\r\n\r\n"),
        ("tab_before_colon", H + b"X-A\t: b\r\n" + END),
        ("space_in_name", H + b"X A: b\r\n" + END),
        ("empty_name", H + b": b\r\n" + END),
        ("no_colon", H + b"XA\r\n" + END),
    ],
    "unsupported_http_version": [
        ("http_2_0_ours", line(b"POST /echo HTTP/2.0")),
        ("http_1_2", line(b"POST /echo HTTP/1.2")),
        ("http_9_9", line(b"POST /echo HTTP/9.9")),
        ("http_3_0", line(b"POST /echo HTTP/3.0")),
        ("http_0_9_ours", line(b"POST /echo HTTP/0.9")),
        ("http_versionless_ours", b"POST /echo\r\n\r\n"),
        # llhttp parses a head and a body after this line: a smuggling primitive.
        ("http_versionless_bare_lf_ours", b"POST /echo\nHost: t\r\nContent-Length: 2\r\n\r\n{}"),
        ("http_2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ],
    "malformed_http": [
        ("bare_lf_ends_request_line", b"POST /echo HTTP/1.1\nHost: t\r\n" + END),
        ("http_lowercase", line(b"POST /echo http/1.1")),
        ("http_version_then_space", line(b"POST /echo HTTP/1.1 ")),
        ("method_unknown", line(b"FOOBAR /echo HTTP/1.1")),
        ("method_lowercase", line(b"post /echo HTTP/1.1")),
        ("method_5000_bytes", line(b"P" * 5000 + b" /echo HTTP/1.1")),
        ("method_with_suffix", line(b"POSTX /echo HTTP/1.1")),
        ("method_tab_separated", line(b"POST\t/echo HTTP/1.1")),
        ("target_with_nul", line(b"POST /echo\x00 HTTP/1.1")),
        ("target_with_space", line(b"POST /ec ho HTTP/1.1")),
    ],
    "invalid_host": [
        ("host_missing_ours", line(b"POST /echo HTTP/1.1", END)),
        ("host_twice_ours", H + b"Host: u\r\n" + END),
    ],
    "upgrade_not_supported": [
        ("method_connect", line(b"CONNECT t:80 HTTP/1.1", b"Host: t\r\n\r\n")),
        ("upgrade_h2c", H + b"Connection: upgrade\r\nUpgrade: h2c\r\n" + END),
    ],
}

EXPECT = "Expect: 100-continue\r\n"
# name, raw bytes, status, error, closes
LIMITS_AND_ROUTING = [
    (
        "content_length_over_limit",
        H + b"Content-Length: 52428800\r\n\r\n",
        413,
        "body_too_large",
        True,
    ),
    (
        "header_block_over_limit",
        H + b"X-Big: " + b"a" * 20000 + b"\r\n" + END,
        431,
        "headers_too_large",
        True,
    ),
    ("unknown_path", post("/nope", b"{}"), 404, "not_found", False),
    (
        "wrong_method",
        line(b"GET /echo HTTP/1.1", b"Host: t\r\n\r\n"),
        405,
        "method_not_allowed",
        False,
    ),
    ("known_method_not_post", line(b"PURGE /echo HTTP/1.1"), 405, "method_not_allowed", False),
    ("expect_on_unknown_path_ours", post("/nope", b"{}", extra=EXPECT), 404, "not_found", True),
]

CASES = [
    pytest.param(raw, 400, error, True, id=name)
    for error, cases in BAD_REQUESTS.items()
    for name, raw in cases
] + [pytest.param(*case[1:], id=case[0]) for case in LIMITS_AND_ROUTING]


@pytest.mark.parametrize(("raw", "status", "error", "closes"), CASES)
def test_hostile_request_gets_one_json_error(
    server: Server, dial: Dial, raw: bytes, status: int, error: str, closes: bool
) -> None:
    client = dial()
    client.send(raw)
    response = client.read_response()
    assert response.status == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == error
    assert server.router.echo.requests == []  # the endpoint never saw it
    if closes:
        assert response.headers["connection"] == "close"
        assert client.is_closed_by_peer()
    else:
        client.send(post("/echo", b"{}"))  # still in step: the next request is served
        assert client.read_response().status == 200
