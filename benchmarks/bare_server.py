"""The ceiling of our stack: uvloop + httptools answering 200, doing nothing else.

Every request gets the same prebuilt keep-alive response in one `transport.write`.
Whatever the gateway's rate is below this server's, on the same core, is the price
of the gateway's own work (parsing, admitting, replying), not of the stack under it.

    python -m benchmarks.bare_server --port 8080
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import cast

import httptools
import uvloop

_BODY = b'{"status":"accepted"}'
_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % len(_BODY)
OK = _HEAD + b"\r\n" + _BODY
OK_CLOSE = _HEAD + b"Connection: close\r\n\r\n" + _BODY
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class BareProtocol(asyncio.Protocol):
    """One connection: parse requests, answer each with `OK`, nothing more."""

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
            self._reply(BAD_REQUEST, close=True)

    def on_message_complete(self) -> None:
        # Pipelined requests complete in order within one feed_data, so the
        # replies go out in order too, which is all HTTP/1.1 asks for.
        if self._parser.should_keep_alive():
            self._reply(OK, close=False)
        else:
            self._reply(OK_CLOSE, close=True)

    # A client that sends but never reads would grow our write buffer without
    # bound; stop reading its requests until it drains the replies.
    def pause_writing(self) -> None:
        self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._transport.resume_reading()

    def _reply(self, response: bytes, *, close: bool) -> None:
        if self._transport.is_closing():
            return
        self._transport.write(response)
        if close:
            self._transport.close()


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then close the listener and return."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(BareProtocol, host, port, backlog=4096)
    print(f"bare_server listening on {host}:{port}", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
