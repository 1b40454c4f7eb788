"""The ceiling for the forwarder: a keep-alive POST loop on uvloop + httptools, nothing else.

N connections each send the same prebuilt request (the seed event as the gateway
would deliver it: CloudEvents binary mode) back to back, one in flight per
connection, until `--requests` responses are in. No Redis, no rendering, no
bookkeeping: whatever the forwarder delivers below this client's rate, on the same
core, is the price of its own work. Deliberately independent of gateway/upstream.py.

    python -m benchmarks.bare_client --url http://127.0.0.1:3000/events --requests 100000

Prints one JSON line on stdout: requests (answered), non2xx, errors (requests lost
with their connection), seconds (first send to last answer), rps, cpu_s (this
process's CPU time over those seconds), connections. Exits 1 if any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlsplit

import httptools
import msgspec
import uvloop

SEED = Path(__file__).resolve().parents[1] / "tests/fixtures/inboxcomponents/message.received.json"
CE_SOURCE = "https://app.inboxcomponents.com"
CE_TYPE_PREFIX = "com.inboxcomponents."
USER_AGENT = "bare-client"
RUN_TIMEOUT_S = 600.0
# CloudEvents HTTP binding §3.1.3.2: percent-encode space, '"', '%' and non-printable.
_CE_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


class _Envelope(msgspec.Struct):
    idempotency_key: str
    event: str
    data: msgspec.Raw


class _Data(msgspec.Struct):
    date: int | None = None
    conversation_id: str | None = None


def build_request(
    url: str, seed: bytes, *, ce_source: str = CE_SOURCE, user_agent: str = USER_AGENT
) -> bytes:
    """The seed event as one complete CloudEvents binary-mode POST (head and body)."""
    parts = urlsplit(url)
    envelope = msgspec.json.decode(seed, type=_Envelope)
    body = bytes(envelope.data)
    data = msgspec.json.decode(body, type=_Data)
    headers = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.hostname}:{parts.port or 80}",
        f"User-Agent: {user_agent}",
        "ce-specversion: 1.0",
        f"ce-id: {_ce(envelope.idempotency_key)}",
        f"ce-type: {_ce(CE_TYPE_PREFIX + envelope.event)}",
        f"ce-source: {_ce(ce_source)}",
    ]
    if data.date is not None:
        moment = datetime.fromtimestamp(data.date, UTC)
        headers.append(f"ce-time: {moment.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    if data.conversation_id is not None:
        headers.append(f"ce-subject: {_ce(data.conversation_id)}")
    headers += ["ce-attempt: 1", "Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1") + body


def _ce(value: str) -> str:
    return quote(value, safe=_CE_SAFE)


class Run:
    """The shared budget of requests, and what became of them."""

    __slots__ = ("answered", "done", "errors", "live", "non2xx", "remaining", "request", "total")

    def __init__(self, request: bytes, total: int, done: asyncio.Future[None]) -> None:
        self.request = request
        self.total = self.remaining = total
        self.answered = self.non2xx = self.errors = self.live = 0
        self.done = done

    def take(self) -> bool:
        if self.remaining == 0:
            return False
        self.remaining -= 1
        return True

    def settle(self) -> None:
        if self.live == 0:  # nobody left to send what is left of the budget
            self.errors += self.remaining
            self.remaining = 0
        if self.answered + self.errors == self.total and not self.done.done():
            self.done.set_result(None)


class ClientProtocol(asyncio.Protocol):
    """One keep-alive connection: send, await the whole response, send again."""

    __slots__ = ("_in_flight", "_parser", "_run", "_transport")

    _transport: asyncio.Transport

    def __init__(self, run: Run) -> None:
        self._run = run
        self._parser = httptools.HttpResponseParser(self)
        self._in_flight = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._run.live += 1

    def send_next(self) -> None:
        if not self._transport.is_closing() and self._run.take():
            self._in_flight = True
            self._transport.write(self._run.request)

    def close(self) -> None:
        self._transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:  # also covers HttpParserUpgrade
            self._transport.abort()

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            return  # 1xx interim: the final response follows
        run = self._run
        self._in_flight = False
        run.answered += 1
        if status >= 300:
            run.non2xx += 1
        if self._parser.should_keep_alive():
            self.send_next()
        else:
            self._transport.close()
        run.settle()

    def connection_lost(self, exc: Exception | None) -> None:
        run = self._run
        run.live -= 1
        if self._in_flight:
            self._in_flight = False
            run.errors += 1
        run.settle()


async def measure(url: str, total: int, connections: int) -> dict[str, Any]:
    """Connect every connection first, then time `total` requests from first send to last answer."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    run = Run(build_request(url, SEED.read_bytes()), total, loop.create_future())
    protocols: list[ClientProtocol] = []
    for _ in range(connections):
        _, protocol = await loop.create_connection(lambda: ClientProtocol(run), host, port)
        protocols.append(protocol)
    cpu_start, started = time.process_time(), time.perf_counter()
    for protocol in protocols:
        protocol.send_next()
    run.settle()  # total == 0
    await asyncio.wait_for(run.done, RUN_TIMEOUT_S)
    seconds = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_start
    for protocol in protocols:
        protocol.close()
    return {
        "requests": run.answered,
        "non2xx": run.non2xx,
        "errors": run.errors,
        "seconds": round(seconds, 6),
        "rps": round(run.answered / seconds, 1) if seconds > 0 else 0.0,
        "cpu_s": round(cpu_s, 3),
        "connections": connections,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="http://host:port/path of the sink")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)
    if args.requests < 0 or args.connections < 1:
        parser.error("--requests must be >= 0 and --connections >= 1")
    result = uvloop.run(measure(args.url, args.requests, args.connections))
    print(json.dumps(result), flush=True)
    failed = result["errors"] or result["non2xx"]
    if failed:
        print(f"bare_client: {failed} requests failed", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
