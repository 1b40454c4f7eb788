"""The listener's HTTP handling, fed raw bytes over a real socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.protocol.conftest import Server
from tests.support.processes import wait_until
from tests.support.rawhttp import RawClient, post


@pytest.fixture
def client(server: Server) -> Iterator[RawClient]:
    c = RawClient.connect(server.port)
    yield c
    c.close()


def test_keep_alive_serves_several_requests_on_one_connection(client: RawClient) -> None:
    for body in (b"{}", b'{"a":1}', b"[]"):
        client.send(post("/echo", body))
        response = client.read_response()
        assert response.status == 200
        assert response.json() == {"path": "/echo", "bytes": len(body)}
        assert "connection" not in response.headers


def test_pipelined_requests_are_answered_in_order_even_when_finished_out_of_order(
    client: RawClient, server: Server
) -> None:
    client.send(b"".join(post("/hold", b'"%d"' % i) for i in range(3)))
    bodies = [client.read_response().body for _ in range(3)]
    assert bodies == [b'"0"', b'"1"', b'"2"']


def test_chunked_request_body_is_reassembled(client: RawClient, server: Server) -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    client.send(head + b"4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n")
    response = client.read_response()
    assert response.status == 200
    assert server.router.echo.requests[-1].body == b"abcdefg"


def test_http_1_0_gets_its_answer_then_the_connection_closes(client: RawClient) -> None:
    client.send(post("/echo", b"{}", version="1.0"))
    response = client.read_response()
    assert response.status == 200
    assert response.headers["connection"] == "close"
    assert client.is_closed_by_peer()


def test_connection_close_is_honoured(client: RawClient) -> None:
    client.send(post("/echo", b"{}", extra="Connection: close\r\n"))
    assert client.read_response().headers["connection"] == "close"
    assert client.is_closed_by_peer()


def test_unknown_path_is_404_with_a_json_reason(client: RawClient, server: Server) -> None:
    client.send(post("/nope", b"{}"))
    response = client.read_response()
    assert response.status == 404
    assert response.json()["error"] == "not_found"
    assert server.router.recorded[-1] == (404, "/nope")
    client.send(post("/echo", b"{}"))  # the connection is still usable
    assert client.read_response().status == 200


def test_other_method_is_405_with_allow_post(client: RawClient) -> None:
    client.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
    response = client.read_response()
    assert response.status == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"] == "method_not_allowed"


def test_content_length_over_the_limit_is_413_before_the_body_is_read(
    client: RawClient,
) -> None:
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 52428800\r\n\r\n")
    response = client.read_response()  # no body byte was sent: answered from the header
    assert response.status == 413
    assert response.json()["error"] == "body_too_large"
    assert client.is_closed_by_peer()


def test_chunked_body_over_the_limit_is_413_while_reading(client: RawClient) -> None:
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    for _ in range(64):  # 4 MiB in 64 KiB chunks, far past the 1 MiB limit
        client.send(chunk)
    client.send(b"0\r\n\r\n")
    response = client.read_response()
    assert response.status == 413
    assert response.json()["error"] == "body_too_large"
    assert client.is_closed_by_peer()


def test_header_block_of_256_kib_is_431(client: RawClient) -> None:
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 256 * 1024 + b"\r\n\r\n")
    response = client.read_response()
    assert response.status == 431
    assert response.json()["error"] == "headers_too_large"
    assert client.is_closed_by_peer()


def test_header_block_trickled_in_pieces_is_cut_at_the_limit(client: RawClient) -> None:
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nX-Big: ")
    for _ in range(64):  # 256 KiB in 4 KiB pieces, a header that never ends
        client.send(b"b" * 4096)
    response = client.read_response()
    assert response.status == 431
    assert client.is_closed_by_peer()


def test_many_small_headers_over_the_limit_are_431(client: RawClient) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(3000))
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n")
    assert client.read_response().status == 431


def test_malformed_http_is_400_and_closes(client: RawClient) -> None:
    client.send(b"THIS IS NOT HTTP\r\n\r\n")
    response = client.read_response()
    assert response.status == 400
    assert response.json()["error"] == "malformed_http"
    assert client.is_closed_by_peer()


def test_error_after_pipelined_requests_keeps_their_order(client: RawClient) -> None:
    client.send(post("/echo", b"{}") + b"GARBAGE\r\n\r\n")
    assert client.read_response().status == 200
    assert client.read_response().status == 400


def test_expect_100_continue_gets_an_interim_response(client: RawClient) -> None:
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    )
    assert client.read_response().status == 100
    client.send(b"{}")
    assert client.read_response().status == 200


def test_connections_over_the_cap_are_closed_at_once(server: Server) -> None:
    server.connections.limit = 1
    first = RawClient.connect(server.port)
    first.send(post("/echo", b"{}"))
    assert first.read_response().status == 200
    second = RawClient.connect(server.port)
    assert second.is_closed_by_peer()
    assert server.connections.refused == 1
    first.close()
    second.close()


def test_drain_closes_idle_connections_and_answers_in_flight_ones(server: Server) -> None:
    idle = RawClient.connect(server.port)
    busy = RawClient.connect(server.port)
    busy.send(post("/hold", b"1") + post("/hold", b"2"))  # held: 2 of 3
    wait_until(lambda: len(server.router.hold.held) == 2, what="two held requests")
    server.call(server.connections.drain)
    assert idle.is_closed_by_peer()
    busy.send(post("/hold", b"3"))  # completes the set: all three answered, then closed
    statuses = [busy.read_response().status for _ in range(3)]
    assert statuses == [200, 200, 200]
    assert busy.is_closed_by_peer()
    idle.close()
    busy.close()
