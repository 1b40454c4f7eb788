"""An HttpProtocol server on a real socket, in its own uvloop thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvloop

from gateway import replies
from gateway.endpoints import Endpoint, Exchange, Request
from gateway.framing import Headers
from gateway.protocol import Connections, HttpProtocol
from gateway.replies import Reply
from tests.protocol.wire import connect
from tests.support.rawhttp import RawClient


@dataclass
class TestLimits:
    __test__ = False  # a fixture value, not a test class

    max_body: int = 1024 * 1024
    max_header: int = 16 * 1024
    max_pipelined: int = 32
    max_connections: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    request_timeout: float = 30.0
    keepalive_timeout: float = 75.0


class Echo:
    """Answers at once with a JSON summary of what it received."""

    name = "echo"

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def handle(self, request: Request, exchange: Exchange) -> None:
        self.requests.append(request)
        body = b'{"path":"%s","bytes":%d}' % (request.path.encode(), len(request.body))
        exchange.respond(replies.build(200, body))


class HoldThenReverse:
    """Holds exchanges until `count` arrived, then answers them last-first."""

    name = "hold"

    def __init__(self, count: int) -> None:
        self.count = count
        self.held: list[tuple[Request, Exchange]] = []

    def handle(self, request: Request, exchange: Exchange) -> None:
        self.held.append((request, exchange))
        if len(self.held) == self.count:
            for req, ex in reversed(self.held):
                ex.respond(replies.build(200, req.body))
            self.held.clear()


class Slow:
    """Answers each request `delay` seconds after it completed, as a slow admit would."""

    name = "slow"

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def handle(self, request: Request, exchange: Exchange) -> None:
        reply = replies.build(200, b'{"bytes":%d}' % len(request.body))
        asyncio.get_running_loop().call_later(self.delay, exchange.respond, reply)


UNAUTHORIZED = replies.problem(401, "invalid_signature", "x-token is missing or wrong")


class Checked(Echo):
    """An Echo whose early check wants `x-token: good` before any body is read."""

    name = "checked"

    def __init__(self) -> None:
        super().__init__()
        self.checked: list[Headers] = []

    def early_check(self, headers: Headers, peer: str) -> Reply | None:
        assert peer == "127.0.0.1"
        self.checked.append(headers)
        return None if (b"x-token", b"good") in headers else UNAUTHORIZED


class Broken:
    """An endpoint with a bug: its handler raises."""

    name = "broken"

    def handle(self, request: Request, exchange: Exchange) -> None:
        raise RuntimeError("endpoint bug")


class TestRouter:
    __test__ = False  # a fixture value, not a test class

    def __init__(self) -> None:
        self.echo = Echo()
        self.hold = HoldThenReverse(3)
        self.slow = Slow(1.5)
        self.checked = Checked()
        self.broken = Broken()
        self.recorded: list[tuple[int, str]] = []
        self._by_path: dict[str, Endpoint] = {
            "/echo": self.echo,
            "/hold": self.hold,
            "/slow": self.slow,
            "/checked": self.checked,
            "/broken": self.broken,
        }

    def resolve(self, method: bytes, path: str) -> Endpoint | Reply:
        endpoint = self._by_path.get(path)
        if endpoint is None:
            return replies.NOT_FOUND
        if method != b"POST":
            return replies.method_not_allowed("POST")
        return endpoint

    def record(self, status: int, path: str) -> None:
        self.recorded.append((status, path))


@dataclass
class Server:
    port: int
    router: TestRouter
    connections: Connections
    loop: asyncio.AbstractEventLoop
    errors: list[dict[str, Any]] = field(default_factory=list)  # what reached the loop

    def call(self, fn: object) -> None:
        self.loop.call_soon_threadsafe(fn)  # type: ignore[arg-type]


@contextmanager
def serve(limits: TestLimits) -> Iterator[Server]:
    """Serve HttpProtocol on a free port from a uvloop thread, until the block ends."""
    loop = uvloop.new_event_loop()
    router = TestRouter()
    connections = Connections(limits.max_connections)
    started = threading.Event()
    holder: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))

    async def start() -> None:
        srv = await loop.create_server(
            lambda: HttpProtocol(router, limits, connections),  # type: ignore[arg-type]
            "127.0.0.1",
            0,
            backlog=2048,  # as the service: bursts of connects must not overflow it
        )
        holder["server"] = srv
        holder["port"] = srv.sockets[0].getsockname()[1]
        started.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(5)
    try:
        yield Server(int(holder["port"]), router, connections, loop, errors)
    finally:

        async def stop() -> None:
            holder["server"].close()
            connections.close_all()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture
def limits() -> TestLimits:
    return TestLimits()


@pytest.fixture
def server(limits: TestLimits) -> Iterator[Server]:
    with serve(limits) as srv:
        yield srv
        # Nothing may escape a protocol callback: the loop saw no exception.
        assert srv.errors == []


Dial = Callable[..., RawClient]


@pytest.fixture
def dial(server: Server) -> Iterator[Dial]:
    """Open raw clients to the server; all closed at the end."""
    clients: list[RawClient] = []

    def open_client(timeout: float = 5.0) -> RawClient:
        clients.append(connect(server.port, timeout))
        return clients[-1]

    yield open_client
    for client in clients:
        client.close()
