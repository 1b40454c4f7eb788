"""HTTP/1.1 server protocol on httptools: limits, pipelining, canned replies.

Callbacks never await. A completed request is handed to its endpoint with an
`Exchange`, its slot in the connection's response order; the endpoint fills
the slot now or later, and the connection writes filled slots from the head
of the queue, so pipelined requests are answered in order however their
admits finish. httptools enforces no size limits, so every limit is here.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol, cast

import httptools

from gateway import replies
from gateway.config import Limits
from gateway.replies import Reply

LINGER_SECONDS = 2.0


class Request:
    """One complete request, as the endpoint sees it."""

    __slots__ = ("body", "headers", "method", "path", "received")

    def __init__(
        self,
        method: bytes,
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        received: float,
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers  # names lower-cased, in arrival order
        self.body = body
        self.received = received  # time.perf_counter() when the body completed

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Endpoint(Protocol):
    name: str

    def handle(self, request: Request, exchange: Exchange) -> None: ...


class Router(Protocol):
    def resolve(self, method: bytes, path: str) -> Endpoint | Reply: ...

    def record(self, status: int, path: str) -> None:
        """Count a reply the listener gave without the endpoint's help."""


class Exchange:
    """A request's place in its connection's response order."""

    __slots__ = ("close_after", "conn", "reply")

    def __init__(self, conn: HttpProtocol, close_after: bool) -> None:
        self.conn = conn
        self.close_after = close_after
        self.reply: Reply | None = None

    def respond(self, reply: Reply) -> None:
        self.reply = reply
        self.conn.flush()


class _Abort(Exception):
    """Raised inside a parser callback to stop parsing and answer `reply`."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


class Connections:
    """Every open connection of one listener, for the cap and for draining."""

    def __init__(self, limit: int, on_refuse: Callable[[], object] = lambda: None) -> None:
        self.limit = limit
        self._on_refuse = on_refuse
        self.open: set[HttpProtocol] = set()
        self.draining = False
        self.refused = 0
        self._empty = asyncio.Event()
        self._empty.set()

    def add(self, conn: HttpProtocol) -> bool:
        if self.draining or len(self.open) >= self.limit:
            self.refused += 1
            self._on_refuse()
            return False
        self.open.add(conn)
        self._empty.clear()
        return True

    def discard(self, conn: HttpProtocol) -> None:
        self.open.discard(conn)
        if not self.open:
            self._empty.set()

    def drain(self) -> None:
        """Answer what is in flight, then close; idle connections close now."""
        self.draining = True
        for conn in list(self.open):
            conn.drain()

    async def wait_closed(self) -> None:
        await self._empty.wait()

    def close_all(self) -> None:
        for conn in list(self.open):
            conn.abort()

    def __repr__(self) -> str:
        return (
            f"<Connections open={len(self.open)} refused={self.refused} draining={self.draining}>"
        )


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, router: Router, limits: Limits, connections: Connections) -> None:
        self._router = router
        self._limits = limits
        self._connections = connections
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._queue: deque[Exchange] = deque()
        self._reading = True
        self._can_write = True
        self._done = False  # an error or `Connection: close` ended this connection
        self._draining = False
        self._in_message = False
        self._linger = False
        self._linger_timer: asyncio.TimerHandle | None = None
        self._reset_message()

    def _reset_message(self) -> None:
        self._url: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._header_bytes = 0
        self._partial_header_bytes = 0
        self._body_bytes = 0
        self._in_headers = False
        self._began_in_chunk = False
        self._target: Endpoint | Reply = replies.NOT_FOUND
        self._method = b""
        self._path = ""

    # -- asyncio callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = transport = cast(asyncio.Transport, transport)
        if not self._connections.add(self):
            self._done = True
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        self._done = True
        self._queue.clear()
        self._connections.discard(self)

    def pause_writing(self) -> None:
        self._can_write = False
        self._pause()

    def resume_writing(self) -> None:
        self._can_write = True
        self._maybe_resume()

    def data_received(self, data: bytes) -> None:
        if self._done:
            return
        self._began_in_chunk = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._fail(cause.reply if isinstance(cause, _Abort) else replies.MALFORMED)
            return
        except httptools.HttpParserUpgrade:
            self._fail(replies.UPGRADE_REFUSED)
            return
        except httptools.HttpParserError:
            self._fail(replies.MALFORMED)
            return
        if self._in_headers and not self._began_in_chunk:
            # This whole chunk sits in httptools' own header buffer, which has no
            # limit: bound it here, before a trickled header block grows forever.
            self._partial_header_bytes += len(data)
            if self._partial_header_bytes > self._limits.max_header:
                self._fail(replies.HEADERS_TOO_LARGE)

    # -- httptools callbacks -------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset_message()
        self._in_message = True
        self._in_headers = True
        self._began_in_chunk = True

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._count_header(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header(len(name) + len(value) + 4)
        self._headers.append((name.lower(), value))

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self._limits.max_header:
            raise _Abort(replies.HEADERS_TOO_LARGE)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        length = _content_length(self._headers)
        if length > self._limits.max_body:
            raise _Abort(replies.BODY_TOO_LARGE)  # decided before reading a byte of it
        self._method = self._parser.get_method()
        self._path = _path(b"".join(self._url))
        target = self._router.resolve(self._method, self._path)
        self._target = target
        if not isinstance(target, Reply) and not self._queue and _expects_continue(self._headers):
            assert self._transport is not None
            self._transport.write(replies.CONTINUE)

    def on_body(self, chunk: bytes) -> None:
        self._body_bytes += len(chunk)
        if self._body_bytes > self._limits.max_body:
            raise _Abort(replies.BODY_TOO_LARGE)
        if not isinstance(self._target, Reply):
            self._body.append(chunk)

    def on_message_complete(self) -> None:
        self._in_message = False
        if self._done:
            return
        close = self._draining or not self._parser.should_keep_alive()
        if not close and self._parser.get_http_version() == "1.0":
            close = True  # 1.0 keep-alive needs an explicit echo; closing is simpler
        exchange = Exchange(self, close)
        self._queue.append(exchange)
        if close:
            self._done = True  # whatever else arrives on this connection is not read
        target = self._target
        if isinstance(target, Reply):
            self._router.record(target.status, self._path)
            exchange.respond(target)
        else:
            body = b"".join(self._body)
            request = Request(self._method, self._path, self._headers, body, time.perf_counter())
            target.handle(request, exchange)
        if len(self._queue) >= self._limits.max_pipelined:
            self._pause()

    # -- writing, in order ---------------------------------------------------

    def flush(self) -> None:
        """Write every answered exchange at the head of the queue."""
        transport = self._transport
        queue = self._queue
        if transport is None or transport.is_closing():
            return
        out: list[bytes] = []
        while queue and queue[0].reply is not None:
            exchange = queue.popleft()
            reply = exchange.reply
            assert reply is not None
            if exchange.close_after:
                out.append(reply.close)
                transport.write(b"".join(out))
                self._close(transport)
                return
            out.append(reply.keep_alive)
        if out:
            transport.write(b"".join(out) if len(out) > 1 else out[0])
        if self._draining and not queue and not self._in_message:
            transport.close()
        else:
            self._maybe_resume()

    def _close(self, transport: asyncio.Transport) -> None:
        if not self._linger or not transport.can_write_eof():
            transport.close()
            return
        # Lingering close (as nginx does): closing with the client's unread
        # bytes in our receive buffer sends a reset, which can destroy the
        # error reply before the client reads it. Half-close instead, keep
        # reading and discarding for a moment, then close.
        transport.write_eof()
        self._linger_timer = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)
        if not self._reading:
            self._reading = True
            transport.resume_reading()

    def _fail(self, reply: Reply) -> None:
        """Answer a request that broke the protocol or a limit, then close."""
        self._router.record(reply.status, self._path)
        self._linger = True
        self._done = True
        self._in_message = False
        exchange = Exchange(self, close_after=True)
        self._queue.append(exchange)
        exchange.respond(reply)

    # -- flow control and shutdown ---------------------------------------------

    def _pause(self) -> None:
        if self._reading and self._transport is not None:
            self._reading = False
            self._transport.pause_reading()

    def _maybe_resume(self) -> None:
        if self._reading or not self._can_write or self._transport is None:
            return
        if len(self._queue) < self._limits.max_pipelined and not self._done:
            self._reading = True
            self._transport.resume_reading()

    def drain(self) -> None:
        self._draining = True
        if self._transport is not None and not self._queue and not self._in_message:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def __repr__(self) -> str:
        return (
            f"<HttpProtocol queued={len(self._queue)} reading={self._reading} "
            f"done={self._done} draining={self._draining}>"
        )


def _content_length(headers: list[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name == b"content-length":
            # httptools already rejected a non-numeric or conflicting value.
            return int(value)
    return 0


def _expects_continue(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(n == b"expect" and v.lower() == b"100-continue" for n, v in headers)


def _path(url: bytes) -> str:
    """The path of an origin-form or absolute-form request target, no query."""
    if url[:1] == b"/" and b"?" not in url and b"#" not in url:
        return url.decode("latin-1")
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        return ""
    return (parsed.path or b"").decode("latin-1")
