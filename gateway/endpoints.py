"""What an endpoint sees of the HTTP listener (gateway.protocol): the complete
`Request`, its `Exchange` (its slot in the connection's response order), and the
`Endpoint` and `Router` interfaces the listener calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gateway.framing import Headers
from gateway.replies import Reply


class Writer(Protocol):
    """The connection an exchange belongs to: writes filled slots in order."""

    def flush(self) -> None: ...


EarlyCheck = Callable[[Headers, str], Reply | None]  # (headers, peer address)


class Request:
    """One complete request, as the endpoint sees it."""

    __slots__ = ("body", "headers", "method", "path", "received")

    def __init__(
        self,
        method: bytes,
        path: str,
        headers: Headers,
        body: bytes,
        received: float,
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers  # names lower-cased, in arrival order; never trailers
        self.body = body
        self.received = received  # time.perf_counter() when the body completed

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Endpoint(Protocol):
    """Answers complete requests through their `Exchange`.

    An endpoint may also define `early_check(headers, peer) -> Reply | None`
    (an `EarlyCheck`; peer: the socket's remote address, "" for a Unix
    socket), called once the head is complete and before the body is
    read. A Reply from it is answered at once and the connection closed; the
    listener writes and counts it (`Router.record`), so the endpoint must not
    count it too. It is not a member here, so endpoints without it still match.
    """

    name: str

    def handle(self, request: Request, exchange: Exchange) -> None: ...


class Router(Protocol):
    def resolve(self, method: bytes, path: str) -> Endpoint | Reply: ...

    def record(self, status: int, path: str) -> None:
        """Count a reply the listener gave without the endpoint's help."""


class Exchange:
    """A request's place in its connection's response order."""

    __slots__ = ("close_after", "conn", "reply")

    def __init__(self, conn: Writer, close_after: bool) -> None:
        self.conn = conn
        self.close_after = close_after
        self.reply: Reply | None = None

    def respond(self, reply: Reply) -> None:
        self.reply = reply
        self.conn.flush()
