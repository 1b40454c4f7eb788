"""The admin listener: /metrics, /healthz (loop alive), /readyz (store up, not draining).

With `workers: N > 1` the supervisor serves it (gateway.workers): /metrics
merges the workers', /readyz asks every worker's own admin listener, a unix
socket that only the supervisor uses (`ask`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from gateway import replies
from gateway.endpoints import Endpoint, Exchange, Request
from gateway.replies import Reply

_OK = replies.build(200, b'{"status":"ok"}')
READY = replies.build(200, b'{"status":"ready"}')
_DRAINING = replies.problem(503, "draining", "the gateway is shutting down")
_STORE_DOWN = replies.problem(503, "store_unreachable", "the store does not answer")
_NOT_FOUND = replies.problem(404, "not_found", "try /metrics, /healthz or /readyz")
_GET_ONLY = replies.method_not_allowed("GET")
_PROMETHEUS_TEXT = b"text/plain; version=0.0.4; charset=utf-8"
_READY_PING_TIMEOUT = 1.0
_ASK_TIMEOUT = 1.0  # a worker's admin listener answers at once or is in trouble

Readiness = Callable[[], Awaitable[Reply]]  # READY, or the 503 saying why not


class _Get:
    def __init__(self, name: str, handler: Callable[[Exchange], None]) -> None:
        self.name = name
        self._handler = handler

    def handle(self, request: Request, exchange: Exchange) -> None:
        self._handler(exchange)


class AdminRouter:
    def __init__(
        self,
        exposition: Callable[[], bytes],
        readiness: Readiness,
        draining: Callable[[], bool],
    ) -> None:
        self._exposition = exposition
        self._readiness = readiness
        self._draining = draining
        self._checks: set[asyncio.Task[None]] = set()
        self._endpoints = {
            "/metrics": _Get("metrics", self._serve_metrics),
            "/healthz": _Get("healthz", lambda exchange: exchange.respond(_OK)),
            "/readyz": _Get("readyz", self._serve_ready),
        }

    def resolve(self, method: bytes, path: str) -> Endpoint | Reply:
        endpoint = self._endpoints.get(path)
        if endpoint is None:
            return _NOT_FOUND
        if method != b"GET":
            return _GET_ONLY
        return endpoint

    def record(self, status: int, path: str) -> None:
        """Admin requests are not webhook traffic: not counted."""

    def _serve_metrics(self, exchange: Exchange) -> None:
        exchange.respond(replies.build(200, self._exposition(), content_type=_PROMETHEUS_TEXT))

    def _serve_ready(self, exchange: Exchange) -> None:
        if self._draining():
            exchange.respond(_DRAINING)
            return
        check = asyncio.get_running_loop().create_task(self._check_ready(exchange))
        self._checks.add(check)
        check.add_done_callback(self._checks.discard)

    async def _check_ready(self, exchange: Exchange) -> None:
        reply = await self._readiness()
        exchange.respond(_DRAINING if self._draining() else reply)


def store_readiness(store_ping: Callable[[], Awaitable[bool]]) -> Readiness:
    """Ready while the store answers a ping within a second."""

    async def readiness() -> Reply:
        try:
            async with asyncio.timeout(_READY_PING_TIMEOUT):
                up = await store_ping()
        except TimeoutError:
            up = False
        return READY if up else _STORE_DOWN

    return readiness


async def ask(socket_path: str, path: str, within: float = _ASK_TIMEOUT) -> tuple[int, str]:
    """GET `path` from an admin listener on a unix socket: (status, the JSON
    body's "error" or ""); (0, why) when it does not answer `within` seconds."""
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_unix_connection(socket_path)
            try:
                request = f"GET {path} HTTP/1.1\r\nHost: worker\r\nConnection: close\r\n\r\n"
                writer.write(request.encode())
                answer = await reader.read()
            finally:
                writer.close()
    except TimeoutError:
        return 0, "no answer"
    except OSError as exc:
        return 0, f"cannot connect ({exc.strerror or exc})"
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        return 0, "not HTTP"
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    error = str(doc.get("error", "")) if isinstance(doc, dict) else ""
    return int(status_line[1]), error
