"""Listener deadlines on a real socket, with short timeouts.

These wait for timeouts to fire; they assert what happened, never how long it took.
"""

from __future__ import annotations

import contextlib
import selectors
import time

import pytest

from tests.protocol.conftest import Dial, Server, TestLimits
from tests.protocol.wire import HEAD, closed_silently
from tests.support.processes import wait_until
from tests.support.rawhttp import RawClient, Response, post


@pytest.fixture
def limits() -> TestLimits:
    # The /slow endpoint answers after 1.5 s: longer than every one of these.
    return TestLimits(
        header_timeout=0.3, body_timeout=0.3, request_timeout=0.8, keepalive_timeout=1.0
    )


def trickle_until_answered(client: RawClient, piece: bytes, every: float) -> Response:
    """Send `piece` every `every` seconds until the server answers; then read the answer."""
    with selectors.DefaultSelector() as selector:
        selector.register(client.sock, selectors.EVENT_READ)
        for _ in range(200):
            if selector.select(every):
                return client.read_response()
            client.send(piece)
    raise AssertionError("the server let the trickle go on")


def assert_timed_out(response: Response, client: RawClient) -> None:
    assert response.status == 408
    assert response.json()["error"] == "request_timeout"
    assert response.headers["connection"] == "close"
    assert client.is_closed_by_peer()


def test_headers_not_complete_in_time_are_408_and_closed(server: Server, dial: Dial) -> None:
    client = dial()
    client.send(HEAD + b"X-Partial: and then nothing")
    assert_timed_out(client.read_response(), client)
    assert server.router.recorded == [(408, "")]


def test_header_trickled_a_byte_at_a_time_is_cut(server: Server, dial: Dial) -> None:
    client = dial()
    client.send(HEAD + b"X-Slow: ")
    assert_timed_out(trickle_until_answered(client, b"a", every=0.05), client)


def test_a_connection_that_never_sends_is_closed_silently(server: Server, dial: Dial) -> None:
    assert closed_silently(dial())
    assert server.router.recorded == []


def test_first_request_head_is_due_a_header_timeout_after_the_connection_opened(
    dial: Dial, limits: TestLimits
) -> None:
    client = dial()
    time.sleep(limits.header_timeout * 0.6)  # connected, not a byte yet
    client.send(HEAD)
    time.sleep(limits.header_timeout * 0.6)  # so far within a header timeout of its first byte
    with contextlib.suppress(OSError):  # it may be answered already
        client.send(b"Content-Length: 0\r\n\r\n")
    assert_timed_out(client.read_response(), client)


def test_stalled_body_is_408_and_closed(server: Server, dial: Dial) -> None:
    client = dial()
    client.send(HEAD + b"Content-Length: 10\r\n\r\n12345")
    assert_timed_out(client.read_response(), client)
    assert server.router.recorded == [(408, "/echo")]
    assert server.router.echo.requests == []


def test_stalled_chunked_body_is_408(server: Server, dial: Dial) -> None:
    client = dial()
    client.send(HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nab")
    assert_timed_out(client.read_response(), client)


def test_body_trickled_past_the_request_timeout_is_408(server: Server, dial: Dial) -> None:
    client = dial()
    client.send(HEAD + b"Content-Length: 1000\r\n\r\n")
    # Never a stall (a byte per 0.1 s < body_timeout), but never done either.
    assert_timed_out(trickle_until_answered(client, b"x", every=0.1), client)
    assert server.router.echo.requests == []


def test_idle_keep_alive_connection_is_closed_silently(server: Server, dial: Dial) -> None:
    client = dial()
    client.send(post("/echo", b"{}"))
    assert client.read_response().status == 200
    assert closed_silently(client)
    assert server.router.recorded == []


def test_idle_time_does_not_count_against_the_next_request(
    server: Server, dial: Dial, limits: TestLimits
) -> None:
    client = dial()
    client.send(post("/echo", b"{}"))
    assert client.read_response().status == 200
    time.sleep(limits.header_timeout * 1.5)  # idle past a header timeout, within keep-alive
    client.send(post("/echo", b"[]"))
    assert client.read_response().status == 200


def test_request_answered_slowly_is_not_cut(server: Server, dial: Dial) -> None:
    client = dial()
    client.send(post("/slow", b"{}"))
    response = client.read_response()
    assert response.status == 200
    assert response.json() == {"bytes": 2}


def test_request_pipelined_behind_a_slow_one_waits_without_a_deadline(
    server: Server, dial: Dial
) -> None:
    client = dial()
    client.send(post("/slow", b"{}") + post("/echo", b"[1]"))
    assert [client.read_response().status for _ in range(2)] == [200, 200]


def test_partial_request_behind_a_slow_one_gets_its_time_after_the_answer(
    server: Server, dial: Dial
) -> None:
    client = dial()
    client.send(post("/slow", b"{}") + HEAD + b"X-Partial: ")
    assert client.read_response().status == 200  # not cut while it waited
    assert_timed_out(client.read_response(), client)  # then its own clock ran out


def test_connection_repr_names_its_phase(server: Server, dial: Dial) -> None:
    client = dial()
    client.send(HEAD + b"Content-Length: 10\r\n\r\n1")

    def reprs() -> str:
        return " ".join(repr(conn) for conn in list(server.connections.open))

    wait_until(lambda: "<HttpProtocol body " in reprs(), what="a connection reading a body")
    assert_timed_out(client.read_response(), client)
