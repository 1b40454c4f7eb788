"""The forwarder's HTTP client: keep-alive connections to one target (`Pool`).

Two ways in. `request()` is a coroutine: it waits for a slot, then for the response.
`post()` is the forwarder's: with a slot and an idle connection free it writes at
once and the outcome reaches a callback from the connection's data_received, with
no future, task or coroutine in between; only a post that must connect, queue for
a slot or resend runs as a task. No pipelining: gateway/upstream_connection.py
holds the connection.
Measured: ~55k POST/s to a localhost sink on one core, where aiohttp's client does ~5k.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Coroutine
from functools import partial
from typing import Any

import structlog

from gateway.upstream_connection import (
    MAX_BODY,
    ConnectError,
    Connection,
    Done,
    PoolClosed,
    ProtocolError,
    Response,
    Unanswered,
    UpstreamError,
    UpstreamTimeout,
)

# The errors and the response are this module's API too (the forwarder's, the tests').
__all__ = [
    "ConnectError",
    "Pool",
    "PoolClosed",
    "ProtocolError",
    "Response",
    "UpstreamError",
    "UpstreamTimeout",
]

log = structlog.get_logger("gateway.upstream")


class Pool:
    """Keep-alive connections to one target, at most `concurrency` requests in flight.

    `timeout` bounds connect + write + response of one `request()`, not the wait
    for a slot: a queue on our side is our backlog, not the target failing, and
    must not burn the event's retry attempts. Callers bound that wait themselves.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        concurrency: int,
        connect_timeout: float,
        timeout: float,
        max_idle: int | None = None,
        max_body: int = MAX_BODY,
    ) -> None:
        if concurrency < 1 or min(connect_timeout, timeout) <= 0 or (max_idle or 0) < 0:
            raise ValueError("concurrency and timeouts must be positive, max_idle not negative")
        self._host = host
        self._port = port
        self._concurrency = concurrency
        self._connect_timeout = connect_timeout
        self.timeout = timeout
        self._max_idle = concurrency if max_idle is None else max_idle
        self.max_body = max_body
        self._idle: list[Connection] = []  # LIFO: the warmest connection is reused first
        self._open: set[Connection] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._active = 0  # slots held, including ones handed to a waiter not yet resumed
        self._closed = False
        self._all_lost = asyncio.Event()
        self._posting: set[asyncio.Task[Response]] = set()  # posts on their way to a connection

    async def request(self, head: bytes, body: bytes) -> Response:
        """POST one prebuilt request (`head` ends in CRLF CRLF) and return the response."""
        return await self._request(head + body)

    async def _request(self, data: bytes) -> Response:
        if self._closed:
            raise PoolClosed(f"{self!r} is closed")
        await self._acquire()
        try:
            deadline = asyncio.get_running_loop().time() + self.timeout
            return await self._exchange(data, deadline)
        finally:
            self._release()

    def post(self, data: bytes, done: Done) -> None:
        """`request` without a coroutine: the forwarder's path. `done(response, None)`
        or `done(None, error)` runs exactly once, always from a later callback.

        With a free slot and an idle connection the request is written at once and
        `done` runs from that connection's data_received: no future, no task, no
        coroutine to resume (the forwarder's lanes and futures cost it ~4 µs an
        event: benchmarks/cpu_per_delivery.sh). Otherwise (a connect, a queue for a
        slot) a task takes the `request` path, and the resend after a stale
        keep-alive a task of its own. If `post` raises, `done` never runs."""
        if self._idle and self._active < self._concurrency and not self._closed:
            conn = self._idle.pop()
            if not conn.transport.is_closing():
                self._active += 1
                deadline = conn.loop.time() + self.timeout
                try:
                    conn.post(data, deadline, partial(self._posted, conn, data, deadline, done))
                except BaseException:
                    conn.transport.abort()
                    self._release()
                    raise
                return
        self._post_by_task(self._request(data), done)

    def _posted(
        self,
        conn: Connection,
        data: bytes,
        deadline: float,
        done: Done,
        response: Response | None,
        error: UpstreamError | None,
    ) -> None:
        if isinstance(error, Unanswered):  # a stale keep-alive, as in _exchange
            # It keeps this slot: released when the resend is answered, however.
            self._post_by_task(
                self._exchange(data, deadline, fresh=True), partial(_released, self, done)
            )
            return
        if error is None:
            self._keep(conn)
        self._release()
        done(response, error)

    def _post_by_task(self, request: Coroutine[Any, Any, Response], done: Done) -> None:
        task = asyncio.get_running_loop().create_task(request)
        self._posting.add(task)
        task.add_done_callback(partial(self._answered_by_task, done))

    def _answered_by_task(self, done: Done, task: asyncio.Task[Response]) -> None:
        self._posting.discard(task)
        if task.cancelled():  # by aclose, maybe before it even started
            done(None, PoolClosed("the pool closed before the request was answered"))
            return
        error = task.exception()
        if error is None:
            done(task.result(), None)
        elif isinstance(error, UpstreamError):
            done(None, error)
        else:  # a bug, not the target's doing; the event is still owed its delivery
            log.error("upstream_crashed", error=repr(error), exc_info=error)
            done(None, ProtocolError(f"{type(error).__name__}: {error}"))

    async def _exchange(self, data: bytes, deadline: float, *, fresh: bool = False) -> Response:
        """Send on the warmest idle connection, or on a new one if none is idle or `fresh`."""
        reused = not fresh and bool(self._idle)
        conn = self._idle.pop() if reused else await self._connect_by(deadline)
        try:
            response = await conn.send(data, deadline)
        except BaseException as exc:
            if reused and isinstance(exc, Unanswered):
                # Stale keep-alive: the target closed this idle connection as we wrote
                # to it. Nothing was read, so one resend on a fresh connection is safe
                # (and the forwarder's delivery is at-least-once in any case).
                return await self._exchange(data, deadline, fresh=True)
            conn.transport.abort()  # after a timeout or error its state is unknown: reset
            raise
        self._keep(conn)
        return response

    def _keep(self, conn: Connection) -> None:
        """Back to the idle list after a complete response, or closed."""
        if conn.reusable and not self._closed and len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.transport.close()

    async def _connect_by(self, deadline: float) -> Connection:
        """A new connection, within both `connect_timeout` and the request's deadline."""
        try:
            async with asyncio.timeout_at(deadline):
                return await self._connect()
        except TimeoutError:  # the deadline's; _connect's own is a ConnectError
            raise UpstreamTimeout(f"no complete response within {self.timeout}s") from None

    async def _connect(self) -> Connection:
        if self._closed:
            raise PoolClosed(f"{self!r} is closed")
        loop = asyncio.get_running_loop()
        where = f"{self._host}:{self._port}"
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: Connection(self), self._host, self._port
                )
        except TimeoutError:  # before OSError: TimeoutError is one
            raise ConnectError(
                f"connect to {where}: no answer in {self._connect_timeout}s"
            ) from None
        except OSError as exc:
            raise ConnectError(f"connect to {where}: {exc}") from exc
        return conn

    # -- slots: at most `concurrency` requests in flight, FIFO beyond ----------

    async def _acquire(self) -> None:
        # A free slot means nobody waits: _release hands slots to waiters directly.
        if self._active < self._concurrency:
            self._active += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                with contextlib.suppress(ValueError):  # _release may have skipped it already
                    self._waiters.remove(waiter)
            elif waiter.exception() is None:
                self._release()  # a slot was handed to us as we were cancelled: pass it on
            raise

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # hand the slot over; _active stays the same
                return
        self._active -= 1

    # -- connection bookkeeping ------------------------------------------------

    def opened(self, conn: Connection) -> None:
        self._open.add(conn)
        if self._closed:
            conn.transport.abort()

    def lost(self, conn: Connection) -> None:
        self._open.discard(conn)
        if conn in self._idle:  # the target closed an idle connection: never hand it out
            self._idle.remove(conn)
        if not self._open:
            self._all_lost.set()

    async def aclose(self) -> None:
        """Close every connection; requests in flight and later ones raise UpstreamError."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosed(f"{self!r} closed while queued"))
        for task in self._posting:
            task.cancel()  # its done gets PoolClosed: _answered_by_task
        if not self._open:
            return
        self._all_lost.clear()
        for conn in list(self._open):
            conn.transport.abort()
        await self._all_lost.wait()

    @property
    def active(self) -> int:
        return self._active

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def __repr__(self) -> str:
        return (
            f"<Pool {self._host}:{self._port} active={self._active} idle={len(self._idle)} "
            f"queued={len(self._waiters)} concurrency={self._concurrency}>"
        )


def _released(
    pool: Pool, done: Done, response: Response | None, error: UpstreamError | None
) -> None:
    pool._release()
    done(response, error)
