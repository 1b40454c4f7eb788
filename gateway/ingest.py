"""Request -> source -> admit -> reply: the public listener's endpoints."""

from __future__ import annotations

import itertools
import os
import time
from functools import partial

import structlog

from gateway import replies
from gateway.admit import AdmitBatcher
from gateway.config import SourceConfig
from gateway.errors import Rejection
from gateway.metrics import Metrics, SourceMetrics
from gateway.models import Admission, AdmitOutcome, body_digest
from gateway.protocol import Endpoint, Exchange, Request
from gateway.replies import Reply
from gateway.routing import Routes
from gateway.sources import Source, build_source

log = structlog.get_logger("gateway.ingest")

# A flood of conflicting keys must not flood the log: one line per interval.
_CONFLICT_LOG_INTERVAL = 10.0

_REPLY_FOR = {
    AdmitOutcome.ACCEPTED: replies.ACCEPTED,
    AdmitOutcome.DUPLICATE: replies.DUPLICATE,
    AdmitOutcome.CONFLICT: replies.DUPLICATE,  # acked so the provider stops; never forwarded
}


class Tokens:
    """Per-request admit tokens: unique across processes and restarts.

    A random boot prefix plus a counter costs far less than os.urandom per
    request, and two processes can never produce the same token.
    """

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex() + ":"
        self._count = itertools.count()

    def next(self) -> str:
        return self._prefix + str(next(self._count))


class SourceEndpoint:
    """POST <path>: parse, route, admit, and answer once the admit returned."""

    def __init__(
        self,
        config: SourceConfig,
        routes: Routes,
        batcher: AdmitBatcher,
        metrics: SourceMetrics,
        tokens: Tokens,
    ) -> None:
        self.name = config.name
        self.path = config.path
        self._source: Source = build_source(config)
        self._routes = routes
        self._batcher = batcher
        self.metrics = metrics
        self._tokens = tokens
        self.not_allowed = replies.method_not_allowed("POST")
        self._conflict_logged = -_CONFLICT_LOG_INTERVAL

    def early_check(self, headers: list[tuple[bytes, bytes]]) -> Reply | None:
        """Header-only checks before the body is read (the listener answers and counts)."""
        rejection = self._source.early_check(headers, time.time())
        if rejection is None:
            return None
        self.metrics.rejected(rejection.code)
        return _rejection_reply(rejection)

    def handle(self, request: Request, exchange: Exchange) -> None:
        try:
            parsed = self._source.parse(request.headers, request.body, time.time())
        except Rejection as rejection:
            self.metrics.rejected(rejection.code)
            self.metrics.answered(rejection.status)
            exchange.respond(_rejection_reply(rejection))
            return
        targets, routed = self._routes.targets(self.name, parsed.event_type)
        if not routed:
            self.metrics.unrouted.inc()
        admission = Admission(
            f"{self.name}:{parsed.event_type}:{parsed.key}",
            self._tokens.next(),
            self.name,
            parsed.event_type,
            parsed.key,
            request.body,
            body_digest(request.body),
            targets,
        )
        self._batcher.submit(admission, partial(self._answer, exchange, request.received))

    def _answer(
        self, exchange: Exchange, received: float, outcome: AdmitOutcome | None, now: float
    ) -> None:
        if outcome is None:
            self.metrics.answered(503)
            exchange.respond(replies.STORE_UNAVAILABLE)
            return
        if outcome is AdmitOutcome.ACCEPTED:
            self.metrics.admitted.inc()
        else:
            self.metrics.duplicates.inc()
            if outcome is AdmitOutcome.CONFLICT:
                self._conflict()
        self.metrics.answered(200)
        self.metrics.ack.observe(now - received)
        exchange.respond(_REPLY_FOR[outcome])

    def _conflict(self) -> None:
        self.metrics.key_conflicts.inc()
        now = time.monotonic()
        if now - self._conflict_logged >= _CONFLICT_LOG_INTERVAL:
            self._conflict_logged = now
            log.warning(
                "key_conflict",
                source=self.name,
                detail="an idempotency key was reused with another body; acked as a duplicate",
            )


def _rejection_reply(rejection: Rejection) -> Reply:
    # A signature failure says which check failed, never what was expected.
    return replies.problem(rejection.status, rejection.code, rejection.reason)


class IngestRouter:
    """Routes the public listener's requests to source endpoints by exact path."""

    def __init__(self, endpoints: list[SourceEndpoint], metrics: Metrics) -> None:
        self._by_path = {e.path: e for e in endpoints}
        self._unknown = metrics.statuses("unknown")

    def resolve(self, method: bytes, path: str) -> Endpoint | Reply:
        endpoint = self._by_path.get(path)
        if endpoint is None:
            return replies.NOT_FOUND
        if method != b"POST":
            return endpoint.not_allowed
        return endpoint

    def record(self, status: int, path: str) -> None:
        endpoint = self._by_path.get(path)
        (endpoint.metrics if endpoint is not None else self._unknown).answered(status)
