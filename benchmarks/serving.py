"""What the harness' own HTTP servers (bare_server, bare_redis, sink_server) share:
a connection that parses requests with httptools and writes replies back, and
serving until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from typing import cast

import httptools

BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class ReplyingProtocol(asyncio.Protocol):
    """One connection: httptools calls the subclass's on_* methods, `_write` answers.
    Unparseable bytes get a 400 and the connection closes."""

    __slots__ = ("_parser", "_transport")

    _transport: asyncio.Transport
    _parser: httptools.HttpRequestParser

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:  # also covers HttpParserUpgrade
            self._write(BAD_REQUEST, close=True)

    # A client that sends but never reads would grow our write buffer without
    # bound; stop reading its requests until it drains the replies.
    def pause_writing(self) -> None:
        self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._transport.resume_reading()

    def _write(self, response: bytes, *, close: bool) -> None:
        if self._transport.is_closing():
            return
        self._transport.write(response)
        if close:
            self._transport.close()


async def serve_until_signal(
    protocol: Callable[[], asyncio.Protocol], host: str, port: int, name: str
) -> None:
    """Listen on host:port until SIGTERM or SIGINT, then close the listener."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(protocol, host, port, backlog=4096)
    print(f"{name} listening on {host}:{port}", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()
