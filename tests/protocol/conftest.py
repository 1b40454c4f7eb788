"""An HttpProtocol server on a real socket, in its own uvloop thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvloop

from gateway import replies
from gateway.protocol import Connections, Endpoint, Exchange, HttpProtocol, Request
from gateway.replies import Reply


@dataclass
class TestLimits:
    max_body: int = 1024 * 1024
    max_header: int = 16 * 1024
    max_pipelined: int = 32
    max_connections: int = 100


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


class TestRouter:
    def __init__(self) -> None:
        self.echo = Echo()
        self.hold = HoldThenReverse(3)
        self.recorded: list[tuple[int, str]] = []

    def resolve(self, method: bytes, path: str) -> Endpoint | Reply:
        endpoint = {"/echo": self.echo, "/hold": self.hold}.get(path)
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

    def call(self, fn: object) -> None:
        self.loop.call_soon_threadsafe(fn)  # type: ignore[arg-type]


@pytest.fixture
def limits() -> TestLimits:
    return TestLimits()


@pytest.fixture
def server(limits: TestLimits) -> Iterator[Server]:
    loop = uvloop.new_event_loop()
    router = TestRouter()
    connections = Connections(limits.max_connections)
    started = threading.Event()
    holder: dict[str, object] = {}

    async def start() -> None:
        srv = await loop.create_server(
            lambda: HttpProtocol(router, limits, connections), "127.0.0.1", 0
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
    yield Server(int(holder["port"]), router, connections, loop)  # type: ignore[arg-type]

    async def stop() -> None:
        holder["server"].close()  # type: ignore[attr-defined]
        connections.close_all()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()
