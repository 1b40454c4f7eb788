"""HTTP/1.1 server protocol on httptools: framing, limits, deadlines, pipelining.

Callbacks never await. A completed request is handed to its endpoint with an
`Exchange` (gateway.endpoints), its slot in the connection's response order; the endpoint fills
the slot now or later, and the connection writes filled slots from the head
of the queue, so pipelined requests are answered in order however their
admits finish. httptools enforces no size limit and no deadline, so every
limit is here; the framing rules added to llhttp's are in `gateway.framing`,
the deadlines' rules in `gateway.deadlines`. Trailer fields are never merged
into the headers. Nothing escapes a callback: an endpoint's exception is a 500,
reported to the loop's exception handler.

Early checks: once a head is complete and resolves to an endpoint, the
endpoint's optional `early_check(headers, peer)` runs before a byte of the body is
read, with or without `Expect`. A Reply from it is written at once and the
connection closes (lingering): an unauthenticated body is never read. With
`Expect: 100-continue` the 100 goes out only after framing, path, method,
size and early check passed; a final answer known from the head alone (404,
405, 413, an early check's) goes out at once instead, then close, since the
client may already be sending the body (RFC 9110 10.1.1).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import cast

import httptools

from gateway import framing, replies
from gateway.config import Limits
from gateway.connections import Connections as Connections  # re-exported
from gateway.deadlines import Deadlines, Phase
from gateway.endpoints import EarlyCheck, Endpoint, Exchange, Request, Router
from gateway.framing import Headers, Rejected
from gateway.replies import Reply

LINGER_SECONDS = 2.0


class HttpProtocol(asyncio.Protocol):
    """One client connection. Built by the running loop's protocol factory."""

    __slots__ = (
        "_began_in_chunk",
        "_body",
        "_body_bytes",
        "_can_write",
        "_connections",
        "_deadlines",
        "_done",
        "_draining",
        "_header_bytes",
        "_headers",
        "_held",
        "_http10",
        "_in_headers",
        "_in_message",
        "_limits",
        "_linger",
        "_linger_timer",
        "_loop",
        "_method",
        "_moved",
        "_parser",
        "_path",
        "_peer",
        "_queue",
        "_reading",
        "_router",
        "_target",
        "_transport",
        "_url",
    )

    def __init__(self, router: Router, limits: Limits, connections: Connections) -> None:
        self._router = router
        self._limits = limits
        self._connections = connections
        self._parser = httptools.HttpRequestParser(self)
        self._parser.set_dangerous_leniencies(**framing.STRICT)
        self._loop = asyncio.get_running_loop()
        self._deadlines = Deadlines(self._loop, limits, lambda: self.phase, self._expire)
        self._transport: asyncio.Transport | None = None
        self._queue: deque[Exchange] = deque()
        self._reading = True
        self._can_write = True
        self._done = False  # an error or `Connection: close` ended this connection
        self._draining = False
        self._in_message = False
        self._moved = False  # the current chunk delivered body bytes
        self._linger = False
        self._linger_timer: asyncio.TimerHandle | None = None
        self._peer = ""
        self._reset_message()

    def _reset_message(self) -> None:
        self._url: list[bytes] = []
        self._headers: Headers = []
        self._body: list[bytes] = []
        self._header_bytes = 0
        self._held = 0  # see `_bound_held`
        self._body_bytes = 0
        self._in_headers = False
        self._began_in_chunk = False
        self._target: Endpoint | Reply = replies.NOT_FOUND
        self._method = b""
        self._path = ""
        self._http10 = False

    # -- asyncio callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) else ""
        if not self._connections.add(self):
            self._done = True
            transport.abort()
            return
        self._deadlines.rearm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        self._deadlines.cancel()  # a pending timer would keep this object alive
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
        self._deadlines.last_read = self._loop.time()
        self._began_in_chunk = self._moved = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            self._fail(self._callback_failure(exc.__context__))
            return
        except httptools.HttpParserUpgrade:
            self._fail(replies.UPGRADE_REFUSED)
            return
        except httptools.HttpParserError as exc:
            self._fail(framing.parser_error(str(exc)))
            return
        self._bound_held(len(data))
        if self._in_message and not self._queue and not self._done:
            self._deadlines.rearm()  # a request began or its head completed: HEADERS or BODY

    def _callback_failure(self, cause: BaseException | None) -> Reply:
        if isinstance(cause, Rejected):
            return cause.reply
        if isinstance(cause, httptools.HttpParserError):
            return framing.parser_error(str(cause))  # httptools' own checks, run in a callback
        self._report(cause)
        return replies.INTERNAL_ERROR

    def _report(self, exc: BaseException | None) -> None:
        """A bug here or in an endpoint, not the client's doing: report it as
        asyncio reports a failing callback (then answer 500 rather than raise)."""
        context = {"message": "HTTP request handling failed", "exception": exc, "protocol": self}
        self._loop.call_exception_handler(context)

    def _bound_held(self, size: int) -> None:
        """Bound what httptools holds for us, which it never limits itself.

        It keeps a header or trailer field until its line ends, so a field
        trickled in pieces would grow without end (and quadratically: it
        appends with `+=`). In a head, count every chunk after the one that
        began it (complete fields are counted as they arrive); in a body,
        count chunks that brought no body byte: chunk framing and trailers.
        """
        if self._in_headers:
            if self._began_in_chunk:
                return
        elif not self._in_message or self._moved:
            self._held = 0
            return
        self._held += size
        if self._held > self._limits.max_header:
            self._fail(replies.HEADERS_TOO_LARGE)

    # -- httptools callbacks -------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset_message()
        self._in_message = self._in_headers = self._began_in_chunk = True
        self._deadlines.begin(queued=bool(self._queue))

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._count_header(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        # _count_header inlined: a call less per header line (three per request)
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self._limits.max_header:
            raise Rejected(replies.HEADERS_TOO_LARGE)
        if self._in_headers:
            self._headers.append((name.lower(), value))
        # Otherwise a trailer: never merged into headers already judged by an
        # early check (RFC 9110 6.5.1 forbids merging without a field's leave).

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self._limits.max_header:
            raise Rejected(replies.HEADERS_TOO_LARGE)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._held = 0
        version = self._parser.get_http_version()
        self._http10 = version == "1.0"
        length, expect = framing.head(self._headers, version)
        if self._parser.should_upgrade():  # CONNECT, or Connection: upgrade
            raise Rejected(replies.UPGRADE_REFUSED)  # refused before an endpoint sees it
        if length > self._limits.max_body:
            raise Rejected(replies.BODY_TOO_LARGE)  # decided before reading a byte of it
        self._method = self._parser.get_method()
        self._path = framing.path(b"".join(self._url))
        self._target = self._router.resolve(self._method, self._path)
        self._judge_head(expect)

    def _judge_head(self, expect: bool) -> None:
        """Answer from the head alone when it decides; otherwise maybe send a 100."""
        target = self._target
        if isinstance(target, Reply):
            if expect:
                raise Rejected(target)  # the client waits for a 100 or this answer
            return
        check: EarlyCheck | None = getattr(target, "early_check", None)
        rejected = check(self._headers, self._peer) if check is not None else None
        if rejected is not None:
            raise Rejected(rejected)
        if expect and not self._queue:
            assert self._transport is not None
            self._transport.write(replies.CONTINUE)

    def on_body(self, chunk: bytes) -> None:
        self._moved = True
        self._body_bytes += len(chunk)
        if self._body_bytes > self._limits.max_body:
            raise Rejected(replies.BODY_TOO_LARGE)
        if not isinstance(self._target, Reply):
            self._body.append(chunk)

    def on_message_complete(self) -> None:
        self._in_message = False
        if self._done:
            return
        # 1.0 keep-alive needs an explicit echo; closing is simpler.
        close = self._draining or self._http10 or not self._parser.should_keep_alive()
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
            try:
                target.handle(request, exchange)
            except Exception as exc:
                self._endpoint_failed(exchange, exc)
        if len(self._queue) >= self._limits.max_pipelined:
            self._pause()

    def _endpoint_failed(self, exchange: Exchange, exc: Exception) -> None:
        self._report(exc)
        if exchange.reply is None:  # else it answered before it raised
            self._router.record(500, self._path)
            exchange.close_after = self._done = self._linger = True
            exchange.respond(replies.INTERNAL_ERROR)

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
            if not queue:
                self._deadlines.restart(busy=self._in_message)
        if self._draining and not queue and not self._in_message:
            transport.close()
        else:
            self._maybe_resume()

    def _close(self, transport: asyncio.Transport) -> None:
        self._deadlines.cancel()
        if not self._linger or not transport.can_write_eof():
            transport.close()
            return
        # Lingering close (as nginx does): closing with the client's unread
        # bytes in our receive buffer sends a reset, which can destroy the
        # error reply before the client reads it. Half-close instead, keep
        # reading and discarding for a moment, then close.
        transport.write_eof()
        self._linger_timer = self._loop.call_later(LINGER_SECONDS, self._hang_up)
        if not self._reading:
            self._reading = True
            transport.resume_reading()

    def _hang_up(self) -> None:
        self._done = True
        if self._transport is None:
            return
        if self._can_write:
            self._transport.close()
        else:
            # The peer stopped reading: a graceful close would wait for it forever.
            self._transport.abort()

    def _fail(self, reply: Reply) -> None:
        """Answer a request that broke the protocol, a limit or a deadline, then close."""
        self._router.record(reply.status, self._path)
        self._linger = True
        self._done = True
        self._in_message = False
        exchange = Exchange(self, close_after=True)
        self._queue.append(exchange)
        exchange.respond(reply)

    # -- deadlines -------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        if self._done or self._queue:
            return Phase.WAITING
        if not self._in_message:
            return Phase.FRESH if self._deadlines.fresh else Phase.IDLE
        return Phase.HEADERS if self._in_headers else Phase.BODY

    def _expire(self, phase: Phase) -> None:
        if phase.answers:
            self._fail(replies.REQUEST_TIMEOUT)
        else:
            self._hang_up()  # no request begun: nothing to answer

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

    def __repr__(self) -> str:
        return (
            f"<HttpProtocol {self.phase.value} queued={len(self._queue)} "
            f"reading={self._reading} done={self._done} draining={self._draining}>"
        )
