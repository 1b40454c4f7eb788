"""Answers decided from the head alone: early checks, Expect: 100-continue, trailers."""

from __future__ import annotations

from tests.protocol.conftest import Dial, Server
from tests.support.rawhttp import post

GOOD = "X-Token: good\r\n"
EXPECT = "Expect: 100-continue\r\n"


def head(path: str, length: int, extra: str = "") -> bytes:
    return post(path, b"", extra=extra).replace(
        b"Content-Length: 0", b"Content-Length: %d" % length
    )


def test_expect_with_a_passing_early_check_gets_100_then_the_answer(
    server: Server, dial: Dial
) -> None:
    client = dial()
    client.send(head("/checked", 2, GOOD + EXPECT))
    assert client.read_response().status == 100
    client.send(b"{}")
    response = client.read_response()
    assert response.status == 200
    assert response.json() == {"path": "/checked", "bytes": 2}


def test_expect_with_a_failing_early_check_gets_the_final_answer_and_no_100(
    server: Server, dial: Dial
) -> None:
    client = dial()
    client.send(head("/checked", 2, EXPECT))
    response = client.read_response()  # the first thing back is final, not a 100
    assert response.status == 401
    assert response.json()["error"] == "invalid_signature"
    assert client.is_closed_by_peer()
    assert server.router.checked.requests == []


def test_failing_early_check_is_answered_before_the_body_is_sent(
    server: Server, dial: Dial
) -> None:
    client = dial()
    client.send(head("/checked", 500_000))  # no Expect, and not one body byte yet
    response = client.read_response()
    assert response.status == 401
    assert response.headers["connection"] == "close"
    assert client.is_closed_by_peer()
    assert server.router.checked.requests == []  # the body was never read or handled


def test_early_check_sees_the_lower_cased_head(server: Server, dial: Dial) -> None:
    client = dial()
    client.send(post("/checked", b"{}", extra=GOOD))
    assert client.read_response().status == 200
    assert (b"x-token", b"good") in server.router.checked.checked[-1]


def test_early_check_rejection_is_counted_by_the_listener(server: Server, dial: Dial) -> None:
    client = dial()
    client.send(post("/checked", b"{}"))
    assert client.read_response().status == 401
    assert server.router.recorded == [(401, "/checked")]


def test_endpoints_without_an_early_check_read_the_body(server: Server, dial: Dial) -> None:
    client = dial()
    client.send(head("/echo", 2, EXPECT))
    assert client.read_response().status == 100
    client.send(b"{}")
    assert client.read_response().status == 200


def test_expect_on_a_wrong_method_gets_405_at_once_and_closes(server: Server, dial: Dial) -> None:
    client = dial()
    client.send(
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n" + EXPECT.encode() + b"\r\n"
    )
    response = client.read_response()
    assert response.status == 405
    assert client.is_closed_by_peer()


def test_expect_with_a_body_over_the_limit_gets_413_at_once(server: Server, dial: Dial) -> None:
    client = dial()
    client.send(head("/echo", 50_000_000, EXPECT))
    assert client.read_response().status == 413
    assert client.is_closed_by_peer()


def test_trailer_fields_are_not_merged_into_the_headers(server: Server, dial: Dial) -> None:
    client = dial()
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\nX-Token: good\r\n\r\n"
    )
    assert client.read_response().status == 200
    request = server.router.echo.requests[-1]
    assert request.header(b"x-token") is None
    assert request.body == b"{}"


def test_trailer_trickled_without_end_is_cut_at_the_header_limit(
    server: Server, dial: Dial
) -> None:
    client = dial()
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: ")
    for _ in range(64):  # 256 KiB of one trailer value: httptools would buffer it all
        client.send(b"t" * 4096)
    response = client.read_response()
    assert response.status == 431
    assert client.is_closed_by_peer()


def test_plain_upgrade_header_without_connection_upgrade_is_served(
    server: Server, dial: Dial
) -> None:
    client = dial()
    client.send(post("/echo", b"{}", extra="Upgrade: h2c\r\n"))
    assert client.read_response().status == 200


def test_endpoint_bug_is_500_and_reported_to_the_loop(server: Server, dial: Dial) -> None:
    client = dial()
    client.send(post("/broken", b"{}"))
    response = client.read_response()
    assert response.status == 500
    assert response.json()["error"] == "internal_error"
    assert client.is_closed_by_peer()
    [report] = server.errors
    assert isinstance(report["exception"], RuntimeError)
    server.errors.clear()  # expected here; the fixture fails a test on any other
