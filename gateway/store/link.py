"""One pipelined RESP connection to Redis, for the calls on the hot path.

Why not redis-py here: on this project's 2-core machines a sequential redis-py
call costs about 93 µs of CPU, this link 38 µs, a bare asyncio protocol 35 µs
(`python -m benchmarks.redis_call`; the README's Performance section). The admit
(per loop tick, or per ADMIT_CHUNK admits), the forwarder's ack and its claim are
those calls; every other store call stays on redis-py.

Replies come back in the order the calls were written, so any number of callers
share one connection: each call is one write and one future. A call that blocks
inside Redis (XREADGROUP BLOCK) stalls the calls behind it, so it gets a link of
its own. A caller that gives up (cancelled) leaves its place in the queue and
its reply is dropped when it comes: the connection stays in step.

Failures are redis-py's exception classes, so callers handle both paths alike:
an error reply is a ResponseError (NoScriptError, BusyLoadingError, ReadOnlyError
as redis-py maps them); a refused or lost connection is a ConnectionError; no
reply within `timeout` is a TimeoutError and drops the connection (the replies
after a missing one can no longer be matched). The next call reconnects.
TLS (rediss://) is not built here: such a store keeps redis-py for these calls.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import BusyLoadingError, NoScriptError, ReadOnlyError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.store import resp
from gateway.timers import LazyTimer, early

_ERRORS: tuple[tuple[str, type[ResponseError] | type[RedisConnectionError]], ...] = (
    ("NOSCRIPT", NoScriptError),
    ("LOADING", BusyLoadingError),  # a ConnectionError in redis-py: retried, as there
    ("READONLY", ReadOnlyError),
)


@dataclass(frozen=True, slots=True)
class LinkSettings:
    host: str
    port: int
    path: str | None  # a unix socket instead of host:port
    username: str | None
    password: str | None
    db: int
    connect_timeout: float
    timeout: float  # per call: no reply within this drops the connection

    @classmethod
    def from_url(cls, url: str, connect_timeout: float, timeout: float) -> LinkSettings | None:
        """The settings for `url`; None for TLS, which this link does not speak."""
        found = parse_url(url)
        if found.get("connection_class") is SSLConnection:
            return None
        return cls(
            host=str(found.get("host", "localhost")),
            port=int(found.get("port", 6379)),
            path=found.get("path"),
            username=found.get("username"),
            password=found.get("password"),
            db=int(found.get("db", 0)),
            connect_timeout=connect_timeout,
            timeout=timeout,
        )

    def handshake(self) -> list[bytes]:
        """The commands a new connection sends before any call."""
        commands = []
        if self.password is not None:
            auth = (self.username, self.password) if self.username else (self.password,)
            commands.append(resp.command(("AUTH", *auth)))
        if self.db:
            commands.append(resp.command(("SELECT", self.db)))
        return commands

    @property
    def where(self) -> str:
        return self.path or f"{self.host}:{self.port}"


def reply_error(message: str) -> Exception:
    for prefix, kind in _ERRORS:
        if message.startswith(prefix):
            return kind(message)
    return ResponseError(message)


class _Protocol(asyncio.Protocol):
    """The connection: a FIFO of waiting calls, matched to replies as they parse."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._reader = hiredis.Reader()
        self._waiters: deque[tuple[asyncio.Future[Any], float]] = deque()  # (call, due)
        self._transport: asyncio.Transport | None = None
        self._timer = LazyTimer(self._on_timer)
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    @property
    def open(self) -> bool:
        return not self.lost and self._transport is not None and not self._transport.is_closing()

    def send(self, packed: bytes, timeout: float) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        call: asyncio.Future[Any] = loop.create_future()
        if not self.open or self._transport is None:
            call.set_exception(RedisConnectionError(f"connection to {self._where} is closed"))
            return call
        due = loop.time() + timeout
        self._waiters.append((call, due))
        self._timer.due_by(loop, due)  # one timer per connection: gateway/timers.py
        self._transport.write(packed)
        return call

    def _on_timer(self) -> None:
        if not self._waiters:
            return
        loop = asyncio.get_running_loop()
        due = self._waiters[0][1]
        if early(loop, due):
            self._timer.due_by(loop, due)
            return
        self._drop(RedisTimeoutError(f"no reply from {self._where} in time"))

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self._drop(RedisConnectionError(f"malformed reply from {self._where}: {exc}"))
                return
            if reply is False:
                return
            if not self._waiters:
                self._drop(RedisConnectionError(f"unexpected reply from {self._where}"))
                return
            call, _ = self._waiters.popleft()
            if call.done():  # its caller gave up: the reply is dropped
                continue
            if isinstance(reply, hiredis.ReplyError):
                call.set_exception(reply_error(str(reply)))
            else:
                call.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        reason = f"connection to {self._where} lost" + (f": {exc}" if exc else "")
        self._fail_all(RedisConnectionError(reason))

    def close(self) -> None:
        self.lost = True
        self._fail_all(RedisConnectionError(f"connection to {self._where} closed"))
        if self._transport is not None:
            self._transport.close()

    def _drop(self, error: Exception) -> None:
        self.lost = True
        self._fail_all(error)
        if self._transport is not None:
            self._transport.abort()

    def _fail_all(self, error: Exception) -> None:
        self._timer.cancel()
        while self._waiters:
            call, _ = self._waiters.popleft()
            if not call.done():
                call.set_exception(error)


class Link:
    """Calls on one connection, (re)connected on demand."""

    def __init__(self, settings: LinkSettings) -> None:
        self.settings = settings
        self._conn: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None

    async def call(self, packed: bytes, reply_within: float | None = None) -> Any:
        """Send one packed command (gateway.store.resp) and return its reply."""
        conn = self._conn
        if conn is None or not conn.open:
            conn = await self._connected()
        within = self.settings.timeout if reply_within is None else reply_within
        return await conn.send(packed, within)

    def send_now(self, packed: bytes) -> asyncio.Future[Any] | None:
        """Write the command now, if connected: its reply's future. None when a
        connect is needed first (then `call`)."""
        conn = self._conn
        if conn is None or not conn.open:
            return None
        return conn.send(packed, self.settings.timeout)

    async def _connected(self) -> _Protocol:
        # Callers arriving while a connect is under way share it.
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _connect(self) -> _Protocol:
        settings = self.settings
        where = settings.where
        try:
            async with asyncio.timeout(settings.connect_timeout):
                conn = await self._open()
                try:
                    for command in settings.handshake():
                        await conn.send(command, settings.connect_timeout)
                except BaseException:
                    conn.close()
                    raise
        except TimeoutError:
            raise RedisTimeoutError(f"connect to {where}: no answer in time") from None
        except OSError as exc:
            raise RedisConnectionError(f"connect to {where}: {exc}") from exc
        except ResponseError as exc:  # AUTH or SELECT refused
            raise RedisConnectionError(f"connect to {where}: {exc}") from exc
        self._conn = conn
        return conn

    async def _open(self) -> _Protocol:
        settings, loop = self.settings, asyncio.get_running_loop()
        where = settings.where
        if settings.path is not None:
            _, conn = await loop.create_unix_connection(lambda: _Protocol(where), settings.path)
        else:
            _, conn = await loop.create_connection(
                lambda: _Protocol(where), settings.host, settings.port
            )
        return conn

    def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
