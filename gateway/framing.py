"""Request framing rules the listener adds to llhttp's, and names for its errors.

llhttp (inside httptools) runs strict here: every leniency is pinned off
(`STRICT`). By itself it rejects Content-Length with Transfer-Encoding, a
repeated or non-decimal Content-Length, a Transfer-Encoding whose last coding
is not chunked, bad chunk sizes, obs-fold, NUL, controls, bare CR or bare LF
in the head, whitespace before a colon, unknown methods, and every version
but 0.9, 1.x and 2.0. `head` rejects what it lets through:

- HTTP/0.9 and HTTP/2.0 request lines; 0.9 includes a versionless request
  line ended by a bare LF, whose headers and body llhttp goes on to parse;
- any Transfer-Encoding but exactly `chunked` (so `gzip, chunked`), and any
  Transfer-Encoding on HTTP/1.0 (RFC 9112 6.1);
- a missing (HTTP/1.1) or repeated Host (RFC 9112 3.2).

Left through: llhttp also parses RTSP/1.x and ICE/1.x request lines, and
httptools does not expose the protocol token, so `POST /x RTSP/1.1` is served
as its HTTP/1.1 twin. Its framing rules are the same, so it cannot
desynchronise a connection.

Each rejection is a 400 whose JSON `error` names the problem.
"""

from __future__ import annotations

import functools

import httptools

from gateway import replies
from gateway.replies import Reply

Headers = list[tuple[bytes, bytes]]

# Pinned off whatever a future httptools defaults to: each leniency is a
# request-smuggling vector wherever another parser on the path disagrees.
STRICT = dict.fromkeys(
    (
        "lenient_headers",
        "lenient_chunked_length",
        "lenient_keep_alive",
        "lenient_transfer_encoding",
        "lenient_version",
        "lenient_data_after_close",
        "lenient_optional_lf_after_cr",
        "lenient_optional_cr_before_lf",
        "lenient_optional_crlf_after_chunk",
        "lenient_spaces_after_chunk_size",
    ),
    False,
)


class Rejected(Exception):
    """The request is answered with `reply` and the connection closed.

    Raised inside parser callbacks too, where it stops parsing.
    """

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def head(headers: Headers, version: str) -> tuple[int, bool]:
    """The Content-Length and whether a 100 is awaited; `Rejected` on bad framing.

    `headers` have lower-cased names; `version` is httptools' "major.minor".
    """
    if version != "1.1" and version != "1.0":
        raise Rejected(replies.UNSUPPORTED_VERSION)
    length, hosts, expect = 0, 0, False
    for name, value in headers:
        if name == b"content-length":
            length = int(value)  # llhttp rejected a repeated or non-decimal value
        elif name == b"transfer-encoding":
            if version == "1.0" or value.rstrip(b" \t").lower() != b"chunked":
                raise Rejected(replies.BAD_TRANSFER_ENCODING)
        elif name == b"host":
            hosts += 1
        elif name == b"expect":
            expect = value.lower() == b"100-continue"
    if hosts > 1 or (hosts == 0 and version == "1.1"):
        raise Rejected(replies.INVALID_HOST)
    return length, expect and version == "1.1"  # 1.0 ignores it (RFC 9110 10.1.1)


# (words in llhttp's reason, the error we name): the first match wins.
_PARSER_ERRORS = (
    ("can't be present with", "conflicting_framing"),
    ("content-length", "invalid_content_length"),
    ("transfer-encoding", "unsupported_transfer_encoding"),
    ("chunk", "invalid_chunk"),
    ("pri/upgrade", "unsupported_http_version"),
    ("connection preface", "unsupported_http_version"),
    ("http version", "unsupported_http_version"),
    ("major version", "unsupported_http_version"),
    ("minor version", "unsupported_http_version"),
    ("expected dot", "unsupported_http_version"),
    ("header", "invalid_header"),
    ("whitespace", "invalid_header"),
    ("start line", "invalid_header"),
)


@functools.lru_cache(maxsize=64)
def parser_error(reason: str) -> Reply:
    """A 400 naming what llhttp rejected, with its reason as the detail.

    llhttp's reasons are fixed strings, never request bytes, so the cache is
    a small set of canned replies.
    """
    lowered = reason.lower()
    error = next((name for words, name in _PARSER_ERRORS if words in lowered), "malformed_http")
    return replies.problem(400, error, reason)


def path(url: bytes) -> str:
    """The path of an origin-form or absolute-form request target, no query."""
    # find(), not `in`: bytes.__contains__ first tries its operand as an int, and for
    # bytes that raises and clears a TypeError, its message formatted: 2.7% of the
    # compiled gateway's CPU per request under perf (benchmarks/PROFILE.md).
    if url[:1] == b"/" and url.find(b"?") < 0 and url.find(b"#") < 0:
        return url.decode("latin-1")
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        return ""
    return (parsed.path or b"").decode("latin-1")
