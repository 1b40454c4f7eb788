"""The app behind the gateway, as cheap as it gets: counts POSTs, answers 200.

uvloop + httptools, keep-alive. Every POST (any path) is counted and answered with
the same prebuilt 200 in one `transport.write`; `GET /count` answers the number of
POSTs so far as a plain decimal body. Anything else gets 404 (not counted).

    python -m benchmarks.sink_server --port 3000 [--record FILE]

--record FILE: also note each POST's `ce-id` header and its time.monotonic() when the
whole request was read (CLOCK_MONOTONIC: one clock for every process of the machine),
written to FILE as "<ce-id> <seconds>" lines when the sink stops (benchmarks.hop).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import uvloop

from benchmarks.serving import ReplyingProtocol, serve_until_signal

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
COUNT_PATH = b"/count"


class Counter:
    """The POSTs every connection of this sink has received."""

    __slots__ = ("posts",)

    def __init__(self) -> None:
        self.posts = 0

    def reply(self) -> bytes:
        body = b"%d" % self.posts
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
        return head % len(body) + body


class SinkProtocol(ReplyingProtocol):
    """One connection: count each POST and answer 200; `GET /count` answers the count."""

    __slots__ = ("_counter", "_url")

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._url = b""

    def on_message_begin(self) -> None:
        self._url = b""

    def on_url(self, url: bytes) -> None:
        self._url += url  # llhttp may hand the URL over in pieces

    def on_message_complete(self) -> None:
        method = self._parser.get_method()
        if method == b"POST":
            self._counter.posts += 1
            reply = OK
        elif method == b"GET" and self._url == COUNT_PATH:
            reply = self._counter.reply()
        else:
            reply = NOT_FOUND
        self._write(reply, close=not self._parser.should_keep_alive())


class RecordingSinkProtocol(SinkProtocol):
    """A SinkProtocol that also notes each POST's ce-id and when it was read."""

    __slots__ = ("_arrivals", "_id")

    def __init__(self, counter: Counter, arrivals: list[tuple[bytes, float]]) -> None:
        super().__init__(counter)
        self._arrivals = arrivals
        self._id = b""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._id = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"ce-id":
            self._id = value

    def on_message_complete(self) -> None:
        if self._parser.get_method() == b"POST":
            self._arrivals.append((self._id, time.monotonic()))
        super().on_message_complete()


async def serve(host: str, port: int, arrivals: list[tuple[bytes, float]] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then print the final count on stderr and return.
    With `arrivals`, each POST's ce-id and arrival time is appended to it."""
    counter = Counter()
    if arrivals is None:
        await serve_until_signal(lambda: SinkProtocol(counter), host, port, "sink_server")
    else:
        recording = arrivals
        protocol = lambda: RecordingSinkProtocol(counter, recording)  # noqa: E731
        await serve_until_signal(protocol, host, port, "sink_server")
    print(f"sink_server received {counter.posts} POSTs", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path, help="write each POST's ce-id and arrival time")
    args = parser.parse_args(argv)
    arrivals: list[tuple[bytes, float]] | None = None if args.record is None else []
    uvloop.run(serve(args.host, args.port, arrivals))
    if args.record is not None and arrivals is not None:
        lines = (f"{ce_id.decode('latin-1')} {at:.6f}\n" for ce_id, at in arrivals)
        args.record.write_text("".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
