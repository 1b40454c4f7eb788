"""The admin listener: /metrics, /healthz (loop alive), /readyz (store up, not draining)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from gateway import replies
from gateway.metrics import Metrics
from gateway.protocol import Endpoint, Exchange, Request
from gateway.replies import Reply

_OK = replies.build(200, b'{"status":"ok"}')
_READY = replies.build(200, b'{"status":"ready"}')
_DRAINING = replies.problem(503, "draining", "the gateway is shutting down")
_STORE_DOWN = replies.problem(503, "store_unreachable", "the store does not answer")
_NOT_FOUND = replies.problem(404, "not_found", "try /metrics, /healthz or /readyz")
_GET_ONLY = replies.method_not_allowed("GET")
_PROMETHEUS_TEXT = b"text/plain; version=0.0.4; charset=utf-8"
_READY_PING_TIMEOUT = 1.0


class _Get:
    def __init__(self, name: str, handler: Callable[[Exchange], None]) -> None:
        self.name = name
        self._handler = handler

    def handle(self, request: Request, exchange: Exchange) -> None:
        self._handler(exchange)


class AdminRouter:
    def __init__(
        self,
        metrics: Metrics,
        store_ping: Callable[[], Awaitable[bool]],
        draining: Callable[[], bool],
    ) -> None:
        self._metrics = metrics
        self._store_ping = store_ping
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
        exchange.respond(
            replies.build(200, self._metrics.exposition(), content_type=_PROMETHEUS_TEXT)
        )

    def _serve_ready(self, exchange: Exchange) -> None:
        if self._draining():
            exchange.respond(_DRAINING)
            return
        check = asyncio.get_running_loop().create_task(self._check_ready(exchange))
        self._checks.add(check)
        check.add_done_callback(self._checks.discard)

    async def _check_ready(self, exchange: Exchange) -> None:
        try:
            async with asyncio.timeout(_READY_PING_TIMEOUT):
                up = await self._store_ping()
        except TimeoutError:
            up = False
        ready = up and not self._draining()
        exchange.respond(_READY if ready else (_DRAINING if self._draining() else _STORE_DOWN))
