"""Raw-socket helpers for protocol tests, on top of tests.support.rawhttp."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable

from tests.support.rawhttp import RawClient, Response

HEAD = b"POST /echo HTTP/1.1\r\nHost: t\r\n"


def connect(port: int, timeout: float = 5.0) -> RawClient:
    client = RawClient.connect(port, timeout=timeout)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


def chunked(body: bytes, sizes: Iterable[int] = ()) -> bytes:
    """`body` as chunked transfer coding: chunks of `sizes`, then the rest, then the last chunk."""
    out, at = [], 0
    for size in sizes:
        if size <= 0 or at >= len(body):
            continue
        out.append(b"%x\r\n%s\r\n" % (len(body[at : at + size]), body[at : at + size]))
        at += size
    if at < len(body):
        out.append(b"%x\r\n%s\r\n" % (len(body) - at, body[at:]))
    return b"".join(out) + b"0\r\n\r\n"


def send_in_pieces(client: RawClient, data: bytes, cuts: Iterable[int], pause: float) -> None:
    """Send `data` split at `cuts`, pausing between pieces so they arrive apart."""
    at = 0
    for cut in sorted(set(cuts)):
        if 0 < cut < len(data) and cut > at:
            client.send(data[at:cut])
            at = cut
            time.sleep(pause)
    client.send(data[at:])


def responses_until_close(client: RawClient) -> list[Response]:
    """Every response the server sends until it closes the connection.

    Raises TimeoutError when the server neither answers nor closes within the
    socket's timeout: a hang.
    """
    responses = []
    while True:
        try:
            responses.append(client.read_response())
        except ConnectionResetError:
            return responses
        except ConnectionError:
            assert client.buffer == b"", f"closed inside a response: {client.buffer!r}"
            return responses


def closed_silently(client: RawClient) -> bool:
    """The server closed without sending a byte (first read is EOF or reset)."""
    return client.is_closed_by_peer() and client.buffer == b""
