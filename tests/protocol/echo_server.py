"""A bare HttpProtocol echo server in a process of its own, for tests that measure it.

`python -m tests.protocol.echo_server MAX_BODY` prints its port on one line,
then serves POST /echo until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import uvloop

from gateway import replies
from gateway.config import Limits
from gateway.endpoints import Endpoint, Exchange, Request
from gateway.protocol import Connections, HttpProtocol
from gateway.replies import Reply


class Echo:
    name = "echo"

    def handle(self, request: Request, exchange: Exchange) -> None:
        exchange.respond(replies.build(200, b'{"bytes":%d}' % len(request.body)))


class EchoRouter:
    def __init__(self) -> None:
        self.echo = Echo()

    def resolve(self, method: bytes, path: str) -> Endpoint | Reply:
        return self.echo if path == "/echo" else replies.NOT_FOUND

    def record(self, status: int, path: str) -> None:
        pass


async def serve(max_body: int) -> None:
    loop = asyncio.get_running_loop()
    limits = Limits(max_body=max_body, max_header=16384, max_pipelined=32, max_connections=1000)
    connections = Connections(limits.max_connections)
    router = EchoRouter()
    server = await loop.create_server(
        lambda: HttpProtocol(router, limits, connections), "127.0.0.1", 0
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()
    connections.close_all()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
