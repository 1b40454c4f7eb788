"""One keep-alive HTTP/1.1 connection to a target, on httptools' response parser.

A request owns its connection from its write to the last byte of its response (no
pipelining), so whatever the connection receives belongs to that request. Parser
callbacks only append; the request's `done` callback gets the outcome once the
parser has returned. gateway.upstream's Pool keeps these connections.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from functools import partial
from typing import NamedTuple, Protocol, cast

import httptools

from gateway.timers import LazyTimer, early

MAX_BODY = 1 << 20  # the app's reply is only logged as an excerpt; the rest is discarded
MAX_HEAD = 64 << 10  # llhttp buffers a header block without limit, so we bound it


class UpstreamError(Exception):
    """Delivery failed for a reason that says nothing about the event itself
    (the forwarder retries every one of these: gateway.policy)."""


class ConnectError(UpstreamError):
    """Could not connect: refused, unreachable, or `connect_timeout` passed."""


class UpstreamTimeout(UpstreamError):
    """The request's total `timeout` passed; its connection was closed."""


class ProtocolError(UpstreamError):
    """A malformed response, or the connection closed before it was complete."""


class PoolClosed(UpstreamError):
    """The pool is closed (we are shutting down); the event is still owed a delivery."""


class Unanswered(ProtocolError):
    """The connection closed before a single byte of the response arrived."""


class Response(NamedTuple):  # one per delivery: cheaper to build than a frozen dataclass
    status: int
    headers: tuple[tuple[bytes, bytes], ...]  # names lower-cased, in arrival order
    body: bytes  # at most the pool's `max_body` bytes: the rest was read and discarded

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


# What a posted request ends in: (response, None) or (None, the reason it failed).
Done = Callable[[Response | None, UpstreamError | None], None]


class Owner(Protocol):
    """What a connection needs of its pool."""

    timeout: float
    max_body: int

    def opened(self, conn: Connection) -> None: ...

    def lost(self, conn: Connection) -> None: ...


class Connection(asyncio.Protocol):
    """One connection to the target, owned by at most one request at a time.

    The request's `done` runs after the parser has returned, never inside one of
    its callbacks: `done` may write the next request on this very connection."""

    __slots__ = (
        "_answer",
        "_body",
        "_body_size",
        "_done",
        "_due",
        "_head_size",
        "_headers",
        "_parser",
        "_pool",
        "_received",
        "_status",
        "_timer",
        "keep_alive",
        "loop",
        "transport",
    )

    def __init__(self, pool: Owner) -> None:
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport  # set by connection_made, before anyone sends
        # Also set by connection_made: on Python 3.11 every get_running_loop() is a
        # getpid() system call, 0.5 µs on this project's VMs, and a delivery took two.
        self.loop: asyncio.AbstractEventLoop
        self._done: Done | None = None  # the request in flight's
        self._answer: Response | None = None  # complete, handed over once the parser returns
        self.keep_alive = False
        self._received = False
        self._head_size = 0
        self._due = 0.0  # the request's deadline on the loop clock
        self._timer = LazyTimer(self._on_timer)
        self._new_message()

    def _new_message(self) -> None:
        self._status = 0  # 0 until the head is complete
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._body_size = 0

    @property
    def reusable(self) -> bool:
        return self.keep_alive and not self.transport.is_closing()

    def send(self, data: bytes, deadline: float) -> asyncio.Future[Response]:
        """Write one request; its response (or UpstreamError) as a future."""
        waiter: asyncio.Future[Response] = self.loop.create_future()
        self.post(data, deadline, partial(_settle_future, waiter))
        return waiter

    def post(self, data: bytes, deadline: float, done: Done) -> None:
        """Write one request; `done(response, None)` or `done(None, error)` follows,
        once: UpstreamTimeout after `deadline`."""
        if self.transport.is_closing():
            raise Unanswered("connection closed before the request was written")
        self.keep_alive = self._received = False
        self._head_size = 0
        self._new_message()
        self.transport.write(data)  # answers arrive from a later callback, never in here
        self._done = done  # after the write: if it raises, `done` never runs
        self._due = deadline
        # one timer per connection: gateway/timers.py
        self._timer.due_by(self.loop, deadline)

    def _on_timer(self) -> None:
        if self._done is None:
            return
        if early(self.loop, self._due):
            self._timer.due_by(self.loop, self._due)
            return
        timeout = self._pool.timeout
        self._fail(UpstreamTimeout(f"no complete response within {timeout}s"))

    # -- asyncio callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.loop = asyncio.get_running_loop()
        sock = transport.get_extra_info("socket")
        if sock is not None:  # both loops set it already; small POSTs must not wait on Nagle
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pool.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()
        self._pool.lost(self)
        if self._done is None:
            return
        if exc is None and self._status >= 200 and _delimited_by_close(self._headers):
            self._settle(self._response(), None)
        elif self._received:
            self._fail(ProtocolError("connection closed mid-response"))
        else:
            self._fail(Unanswered("connection closed before any response byte"))

    def data_received(self, data: bytes) -> None:
        if self._done is None:
            self.transport.abort()  # bytes nobody asked for: this connection's framing is lost
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self._answer is None:
                self._fail(ProtocolError(f"malformed response: {exc!r}"))
                return
            self.transport.abort()  # bytes after our response: the framing is lost
        if self._answer is not None:
            answer, self._answer = self._answer, None
            self._settle(answer, None)
        elif self._status == 0:
            self._head_size += len(data)
            if self._head_size > MAX_HEAD:
                self._fail(ProtocolError(f"response head larger than {MAX_HEAD} bytes"))

    # -- httptools callbacks -------------------------------------------------

    def on_message_begin(self) -> None:
        if self._answer is not None:  # a second response in the bytes after ours
            raise ProtocolError("unsolicited response")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, chunk: bytes) -> None:
        room = self._pool.max_body - self._body_size
        if room > 0:
            self._body.append(chunk if len(chunk) <= room else chunk[:room])
        self._body_size += len(chunk)

    def on_message_complete(self) -> None:
        if self._status < 200:
            self._new_message()  # 1xx interim (100 Continue): the final response follows
            return
        # Asked now: llhttp forgets the message's keep-alive state once it completes.
        self.keep_alive = self._parser.should_keep_alive()
        if not self.keep_alive:
            self.transport.close()
        self._answer = self._response()

    def _response(self) -> Response:
        return Response(self._status, tuple(self._headers), b"".join(self._body))

    def _settle(self, response: Response | None, error: UpstreamError | None) -> None:
        done, self._done = self._done, None
        if done is not None:
            done(response, error)

    def _fail(self, error: UpstreamError) -> None:
        self.transport.abort()
        self._settle(None, error)


def _settle_future(
    waiter: asyncio.Future[Response], response: Response | None, error: UpstreamError | None
) -> None:
    if waiter.done():  # its caller was cancelled
        return
    if error is None:
        waiter.set_result(cast(Response, response))
    else:
        waiter.set_exception(error)


def _delimited_by_close(headers: list[tuple[bytes, bytes]]) -> bool:
    """True if the body runs to EOF: no Content-Length and not chunked (RFC 9112 6.3)."""
    for name, value in headers:
        if name == b"content-length":
            return False
        if name == b"transfer-encoding" and value.rstrip().lower().endswith(b"chunked"):
            return False
    return True
