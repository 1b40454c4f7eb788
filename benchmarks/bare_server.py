"""The ceiling of our stack: uvloop + httptools answering 200, doing nothing else.

Every request gets the same prebuilt keep-alive response in one `transport.write`.
Whatever the gateway's rate is below this server's, on the same core, is the price
of the gateway's own work (parsing, admitting, replying), not of the stack under it.

    python -m benchmarks.bare_server --port 8080
"""

from __future__ import annotations

import argparse

import uvloop

from benchmarks.serving import ReplyingProtocol, serve_until_signal

_BODY = b'{"status":"accepted"}'
_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % len(_BODY)
OK = _HEAD + b"\r\n" + _BODY
OK_CLOSE = _HEAD + b"Connection: close\r\n\r\n" + _BODY


class BareProtocol(ReplyingProtocol):
    """One connection: parse requests, answer each with `OK`, nothing more."""

    __slots__ = ()

    def on_message_complete(self) -> None:
        # Pipelined requests complete in order within one feed_data, so the
        # replies go out in order too, which is all HTTP/1.1 asks for.
        if self._parser.should_keep_alive():
            self._write(OK, close=False)
        else:
            self._write(OK_CLOSE, close=True)


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then close the listener and return."""
    await serve_until_signal(BareProtocol, host, port, "bare_server")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
