"""Request -> source -> admit -> reply: the public listener's endpoints."""

from __future__ import annotations

import itertools
import os
import time
from functools import partial

import structlog

from gateway import replies
from gateway.admit import AdmitBatcher
from gateway.clients import AllowList, RateLimiter, client_ip, retry_after_seconds
from gateway.config import Clients, SourceConfig
from gateway.endpoints import EarlyCheck, Endpoint, Exchange, Request
from gateway.errors import Rejection
from gateway.metrics import Metrics, SourceMetrics
from gateway.models import Admission, AdmitOutcome, body_digest
from gateway.replies import Reply
from gateway.routing import Routes
from gateway.sources import PATH_TOKEN, Source, build_source

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


class ClientPolicy:
    """Per-client rules shared by every source: the client's address behind
    trusted proxies, and its rate limit (off unless configured)."""

    def __init__(self, clients: Clients) -> None:
        self.trusted_hops = clients.trusted_hops
        self.limiter = (
            RateLimiter(clients.rate_limit, clients.burst) if clients.rate_limit > 0 else None
        )
        self._throttled: dict[str, Reply] = {}  # Retry-After value -> reply

    def address(self, peer: str, headers: list[tuple[bytes, bytes]]) -> str:
        if self.trusted_hops == 0:
            return peer
        hops = [v for n, v in headers if n == b"x-forwarded-for"]
        return client_ip(peer, b",".join(hops) if hops else None, self.trusted_hops)

    def throttle(self, ip: str) -> Reply | None:
        if self.limiter is None:
            return None
        wait = self.limiter.wait(ip, time.monotonic())
        if wait == 0.0:
            return None
        seconds = retry_after_seconds(wait)
        reply = self._throttled.get(seconds)
        if reply is None:
            detail = "too many requests from this client"
            reply = replies.problem(429, "rate_limited", detail, Retry_After=seconds)
            self._throttled[seconds] = reply
        return reply


_FORBIDDEN = replies.problem(403, "ip_not_allowed", "this client address may not call")


class SourceEndpoint:
    """POST <path>: parse, route, admit, and answer once the admit returned."""

    def __init__(
        self,
        config: SourceConfig,
        routes: Routes,
        batcher: AdmitBatcher,
        metrics: SourceMetrics,
        tokens: Tokens,
        clients: ClientPolicy,
    ) -> None:
        self.name = config.name
        self.path = config.path
        self.path_token = config.token is not None and config.token.path_segment
        self._allow = AllowList(config.allow_ips)
        self._clients = clients
        self._source: Source = build_source(config)
        self._routes = routes
        self._batcher = batcher
        self.metrics = metrics
        self._tokens = tokens
        self.not_allowed = replies.method_not_allowed("POST")
        self._conflict_logged = -_CONFLICT_LOG_INTERVAL
        # The listener's early check (gateway.endpoints.Endpoint), or None when no
        # check is configured: then the listener makes no call per request for it.
        self._checks_client = bool(self._allow) or clients.limiter is not None
        checks = self._checks_client or self._source.checks_headers
        self.early_check: EarlyCheck | None = self.check_head if checks else None

    def check_head(self, headers: list[tuple[bytes, bytes]], peer: str) -> Reply | None:
        """Checks before the body is read (the listener answers and counts):
        who is calling, how often, and the credentials in the headers."""
        if self._checks_client:
            refused = self._admit_client(self._clients.address(peer, headers))
            if refused is not None:
                return refused
        rejection = self._source.early_check(headers, time.time())
        if rejection is None:
            return None
        self.metrics.rejected(rejection.code)
        return _rejection_reply(rejection)

    def _admit_client(self, ip: str) -> Reply | None:
        if not self._allow.allows(ip):
            self.metrics.rejected("ip_not_allowed")
            return _FORBIDDEN
        throttled = self._clients.throttle(ip)
        if throttled is not None:
            self.metrics.rejected("rate_limited")
        return throttled

    def with_path_token(self, token: str) -> PathTokenEndpoint:
        return PathTokenEndpoint(self, (PATH_TOKEN, token.encode("latin-1")))

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


class PathTokenEndpoint:
    """A source whose secret is the last path segment, for one request: the
    segment travels to the source as a pseudo header, never into logs."""

    __slots__ = ("_endpoint", "_token", "name")

    def __init__(self, endpoint: SourceEndpoint, token: tuple[bytes, bytes]) -> None:
        self._endpoint = endpoint
        self._token = token
        self.name = endpoint.name

    def early_check(self, headers: list[tuple[bytes, bytes]], peer: str) -> Reply | None:
        return self._endpoint.check_head([*headers, self._token], peer)

    def handle(self, request: Request, exchange: Exchange) -> None:
        request.headers = [*request.headers, self._token]
        self._endpoint.handle(request, exchange)


class IngestRouter:
    """Routes the public listener's requests to source endpoints by path:
    exact, or `<path>/<token>` for sources whose secret is a path segment."""

    def __init__(self, endpoints: list[SourceEndpoint], metrics: Metrics) -> None:
        self._by_path = {e.path: e for e in endpoints if not e.path_token}
        self._by_token_path = {e.path.rstrip("/"): e for e in endpoints if e.path_token}
        self._unknown = metrics.statuses("unknown")

    def _find(self, path: str) -> tuple[SourceEndpoint | None, str]:
        endpoint = self._by_path.get(path)
        if endpoint is not None or not self._by_token_path:
            return endpoint, ""
        base, _, token = path.rpartition("/")
        endpoint = self._by_token_path.get(base)
        return (endpoint, token) if endpoint is not None and token else (None, "")

    def resolve(self, method: bytes, path: str) -> Endpoint | Reply:
        endpoint, token = self._find(path)
        if endpoint is None:
            return replies.NOT_FOUND
        if method != b"POST":
            return endpoint.not_allowed
        return endpoint.with_path_token(token) if token else endpoint

    def record(self, status: int, path: str) -> None:
        endpoint, _ = self._find(path)
        (endpoint.metrics if endpoint is not None else self._unknown).answered(status)
