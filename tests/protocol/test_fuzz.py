"""Property tests: bytes split at arbitrary points, fed to a real connection.

Whatever arrives, the server never lets an exception out of a callback, never
hangs (every connection ends within its deadlines: the client's socket
timeout turns a hang into a failure), and answers 200 only to a valid POST to
a valid path. Valid requests split anywhere are all answered 200.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.protocol.conftest import Server, TestLimits, serve
from tests.protocol.wire import chunked, connect, responses_until_close, send_in_pieces
from tests.support.rawhttp import Response

# Short deadlines keep examples that wait for one quick. Valid requests get
# more room, so that a busy machine cannot turn their few pauses into a 408.
SHORT = TestLimits(
    max_body=4096,
    max_header=2048,
    header_timeout=0.2,
    body_timeout=0.2,
    request_timeout=0.4,
    keepalive_timeout=0.1,
)
ROOMY = replace(SHORT, header_timeout=1.0, body_timeout=0.3, request_timeout=1.5)
HANG = 3.0  # far past every deadline above: a connection still open then is hung
PAUSE = 0.002  # between pieces, so that they arrive as separate reads

FAST = settings(
    deadline=None,
    database=None,
    derandomize=True,  # the same examples on every run: CI stays reproducible
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def short_server() -> Iterator[Server]:
    with serve(SHORT) as server:
        yield server


@pytest.fixture(scope="module")
def roomy_server() -> Iterator[Server]:
    with serve(ROOMY) as server:
        yield server


def converse(server: Server, data: bytes, cuts: list[int]) -> list[Response]:
    """Send `data` in pieces; every response until the server closes (not 100s)."""
    client = connect(server.port, timeout=HANG)
    try:
        # A send may find the server already answered and closed: read what it said.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            send_in_pieces(client, data, cuts, PAUSE)
        responses = responses_until_close(client)
    finally:
        client.close()
    assert server.errors == []  # nothing escaped a callback
    return [r for r in responses if r.status != 100]


cut_points = st.lists(st.integers(min_value=1, max_value=3000), max_size=5)

# -- a request grammar whose every part is known good or bad -------------------------

METHODS = ([b"POST"], [b"GET", b"PUT", b"post", b"POSTX", b"PRI", b"CONNECT", b""])
TARGETS = ([b"/echo", b"/echo?a=1", b"http://h/echo"], [b"/nope", b"*", b"/ec ho", b"/echo\x00"])
VERSIONS = ([b"HTTP/1.1", b"HTTP/1.0"], [b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9", b"http/1.1", b""])
HEADERS = (
    [
        b"X-A: b",
        b"Content-Type: application/json",
        b"X-Obs-Text: caf\xe9",
        b"Upgrade: h2c",  # without Connection: upgrade, only a header
        b"Expect: 100-continue",
    ],
    [
        b"X-A : b",
        b" folded",
        b"X-A: b\x00c",
        b"X-A: b\rc",
        b"Bad Name: v",
        b"Host: again",
        b"Transfer-Encoding: gzip",
        b"Content-Length: 1, 1",
        b"Connection: upgrade\r\nUpgrade: h2c",
        b"X-Big: " + b"a" * 2100,  # past max_header
    ],
)
FRAMINGS = (["length", "chunked"], ["both", "length_twice", "length_short", "bad_chunk"])
PARTS = ["method", "target", "version", "header", "host", "framing", "size", "line_end"]


def frame(framing: str, body: bytes, sizes: list[int]) -> tuple[list[bytes], bytes]:
    """Header lines and encoded body for `framing`."""
    length = b"Content-Length: %d" % len(body)
    te = b"Transfer-Encoding: chunked"
    return {
        "length": ([length], body),
        "chunked": ([te], chunked(body, sizes)),
        "both": ([length, te], chunked(body, sizes)),
        "length_twice": ([length, length], body),
        "length_short": ([b"Content-Length: %d" % (len(body) + 5)], body),  # never completes
        "bad_chunk": ([te], b"zz\r\n" + body + b"\r\n0\r\n\r\n"),
    }[framing]


@st.composite
def grammar_requests(draw: st.DrawFn) -> tuple[bytes, bool, int]:
    """(raw request, whether it deserves a 200, body length).

    A few parts are spoiled, the rest drawn from good choices, so that each
    rejection is also tried inside an otherwise valid request.
    """
    spoiled = draw(st.sets(st.sampled_from(PARTS), max_size=2))

    def pick(part: str, choices: tuple[list[bytes], list[bytes]]) -> bytes:
        return draw(st.sampled_from(choices[part in spoiled]))

    version = pick("version", VERSIONS)
    framing = draw(st.sampled_from(FRAMINGS["framing" in spoiled]))
    body = b"x" * 5000 if "size" in spoiled else draw(st.binary(max_size=64))
    framing_lines, encoded = frame(framing, body, draw(st.lists(st.integers(1, 40), max_size=4)))
    lines = [pick("method", METHODS) + b" " + pick("target", TARGETS) + b" " + version]
    lines += [] if "host" in spoiled else [b"Host: t"]
    lines += draw(st.lists(st.sampled_from(HEADERS[0]), max_size=2))
    lines += [pick("header", HEADERS)] if "header" in spoiled else []
    lines += [*framing_lines, b""]
    ends = [b"\r\n"] * len(lines)
    if "line_end" in spoiled:  # one line ended by a bare LF or CR
        ends[draw(st.integers(0, len(lines) - 1))] = draw(st.sampled_from([b"\n", b"\r"]))
    raw = b"".join(line + end for line, end in zip(lines, ends, strict=True))
    # HTTP/1.0 needs no Host, and may not use chunked.
    host_ok = "host" not in spoiled or version == b"HTTP/1.0"
    chunked_ok = framing != "chunked" or version == b"HTTP/1.1"
    valid = spoiled <= {"host"} and host_ok and chunked_ok
    event(f"deserves a 200: {valid}")
    return raw + encoded, valid, len(body)


@settings(FAST, max_examples=150)
@given(request=grammar_requests(), cuts=cut_points)
def test_only_valid_requests_are_served(
    roomy_server: Server, request: tuple[bytes, bool, int], cuts: list[int]
) -> None:
    raw, valid, body_length = request
    responses = converse(roomy_server, raw, cuts)
    if valid:
        assert [r.status for r in responses] == [200]
        assert responses[0].json() == {"path": "/echo", "bytes": body_length}
    else:
        assert len(responses) <= 1  # one answer at most, then close
        assert 200 not in [r.status for r in responses]


# -- arbitrary bytes, alone or after a valid beginning -----------------------------

PREFIXES = [
    b"",
    b"POST /echo HTTP/1.1\r\n",
    b"POST /echo HTTP/1.1\r\nHost: t\r\n",
    b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n",
]
TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
FIELD_LINE = TOKEN + rb":[ \t]*[^\x00-\x08\x0a-\x1f\x7f]*\r\n"
# What a 200 needs, checked independently of llhttp: a POST of /echo and a
# well-formed head with one Host.
SERVABLE = re.compile(rb"POST /echo HTTP/1\.[01]\r\n(?:" + FIELD_LINE + rb")*\r\n", re.DOTALL)


@settings(FAST, max_examples=100)
@given(prefix=st.sampled_from(PREFIXES), junk=st.binary(max_size=200), cuts=cut_points)
def test_arbitrary_bytes_never_get_a_200_unless_a_valid_post(
    short_server: Server, prefix: bytes, junk: bytes, cuts: list[int]
) -> None:
    data = prefix + junk
    responses = converse(short_server, data, cuts)
    if 200 in [r.status for r in responses]:
        head = SERVABLE.match(data)
        assert head is not None, f"200 for {data!r}"
        assert head.group().lower().count(b"\r\nhost:") == 1


# -- valid requests, pipelined and split anywhere -----------------------------------

valid_bodies = st.lists(
    st.tuples(st.binary(max_size=300), st.booleans(), st.lists(st.integers(1, 100), max_size=4)),
    min_size=1,
    max_size=3,
)


def encode(body: bytes, is_chunked: bool, sizes: list[int]) -> bytes:
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    if is_chunked:
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, sizes)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


@settings(FAST, max_examples=60)
@given(requests=valid_bodies, cuts=st.lists(st.integers(min_value=1, max_value=1200), max_size=8))
def test_valid_requests_split_anywhere_are_all_served(
    roomy_server: Server, requests: list[tuple[bytes, bool, list[int]]], cuts: list[int]
) -> None:
    data = b"".join(encode(*request) for request in requests)
    client = connect(roomy_server.port, timeout=HANG)
    try:
        send_in_pieces(client, data, cuts, PAUSE)
        responses = [client.read_response() for _ in requests]
    finally:
        client.close()
    assert [r.status for r in responses] == [200] * len(requests)
    assert [r.json()["bytes"] for r in responses] == [len(body) for body, _, _ in requests]
    assert roomy_server.errors == []
