"""A recording HTTP sink that plays the app behind the gateway.

Real sockets, its own uvloop thread. It records every request and answers
each by a per-key plan (a list of statuses, then 200s), so tests can make
the app fail, throttle or hang for chosen events.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools
import uvloop

from tests.support.processes import wait_until


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when the request was complete

    @property
    def key(self) -> str:
        found = self.headers.get("ce-id") or self.headers.get("idempotency-key")
        if found:
            return found
        return str(json.loads(self.body).get("id", ""))


@dataclass
class Plan:
    statuses: list[tuple[int, dict[str, str]]] = field(default_factory=list)


class _SinkProtocol(asyncio.Protocol):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sink.connections += 1
        self.sink.open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sink.open.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        request = Recorded(self.url.decode(), self.headers, b"".join(self.body), time.monotonic())
        self._reset()
        status, headers, delay = self.sink.answer_for(request)
        if delay:
            asyncio.get_running_loop().call_later(delay, self._respond, status, headers)
        else:
            self._respond(status, headers)

    def _respond(self, status: int, headers: dict[str, str]) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.transport.write(
            f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n{extra}\r\nok".encode("latin-1")
        )


class Sink:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.plans: dict[str, collections.deque[tuple[int, dict[str, str]]]] = {}
        self.delay = 0.0  # seconds before every answer
        self.default_status = 200
        self.connections = 0
        self.open: set[_SinkProtocol] = set()
        self._delivered: list[str] = []
        self._lock = threading.Lock()
        self._loop = uvloop.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await self._loop.create_server(
                lambda: _SinkProtocol(self), "127.0.0.1", 0
            )
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def plan(self, key: str, *answers: int | tuple[int, dict[str, str]]) -> None:
        """The next answers for `key`, in order; 200 (or default_status) after them."""
        steps = [a if isinstance(a, tuple) else (a, {}) for a in answers]
        with self._lock:
            self.plans[key] = collections.deque(steps)

    def answer_for(self, request: Recorded) -> tuple[int, dict[str, str], float]:
        with self._lock:
            self.requests.append(request)
            steps = self.plans.get(request.key)
            status, headers = steps.popleft() if steps else (self.default_status, {})
            if 200 <= status < 300:
                self._delivered.append(request.key)
        return status, headers, self.delay

    def delivered(self) -> list[str]:
        """Keys of the requests answered 2xx (deliveries), in order, with repeats."""
        with self._lock:
            return list(self._delivered)

    def received(self, key: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if key is None or r.key == key]

    def keys(self) -> collections.Counter[str]:
        with self._lock:
            return collections.Counter(r.key for r in self.requests)

    def wait_for(
        self, condition: Callable[[Sink], bool], timeout: float = 20, what: str = ""
    ) -> None:
        wait_until(lambda: condition(self), timeout=timeout, what=what or "the sink")

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            for conn in list(self.open):
                if conn.transport is not None:
                    conn.transport.close()
            await asyncio.sleep(0.05)  # lets connection_lost run before the loop closes

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
