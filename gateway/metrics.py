"""Prometheus metrics (DESIGN.md §5), with label children bound up front.

The hot path never calls `labels()`: each source gets a `SourceMetrics` whose
children are created once, and per-status counters are cached in a dict. With
`workers: N > 1` the values live in files the supervisor merges
(gateway.metrics_workers). A single process (workers: 1) keeps
prometheus_client's plain in-memory values.

The hottest series of a single process (requests answered 200, events admitted,
the ack and delivery durations, deliveries that succeeded) are tallied as plain
numbers (`Tally`, `Timings`) and folded into their children before every
exposition (`Metrics.fold`). prometheus_client's inc/observe cost the gateway
~2 µs per request and ~2.5 µs per delivery of CPU (benchmarks/cpu_per_request.sh,
cpu_per_delivery.sh, with and without them); with the tallies, 22.4-23.1 against
23.8-24.6 µs per request and 21.4-22.1 against 23.2-23.5 µs per delivery (3
interleaved pairs each). A worker's values go to its shared file at once instead
(no tally): a tally there would be lost with a kill -9, and the supervisor reads
the files without asking the workers.
"""

from __future__ import annotations

from bisect import bisect_left

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    values,
)
from prometheus_client.utils import INF

import gateway
import gateway.build

try:  # `_created` series double the series count and nobody graphs them.
    from prometheus_client import disable_created_metrics

    disable_created_metrics()  # type: ignore[no-untyped-call]
except ImportError:  # pragma: no cover - older prometheus-client
    pass

# Acks take tens of microseconds to a few milliseconds; the default buckets
# start at 5 ms and would put every ack in the first one.
ACK_BUCKETS = (
    25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
    1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0, INF,
)  # fmt: skip

FORWARD_BUCKETS = (
    0.5e-3, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
    1.0, 2.5, 5.0, 10.0, 30.0, INF,
)  # fmt: skip
OUTCOMES = ("delivered", "http_error", "connect_error", "timeout", "protocol_error")
STORE_MODES = ("redis", "spool", "draining", "sqlite")

PREFIX = "webhook_gateway_"
STORE_MODE_HELP = (
    "1 for the admit path in use: redis, spool (Redis unavailable), draining "
    "(the spool moving into Redis) or sqlite (the embedded store)."
)


def build_info(registry: CollectorRegistry) -> None:
    """`build`: mypyc (compiled, the container image) or interpreted (gateway.build)."""
    info = Gauge(
        PREFIX + "build_info", "Build information.", ["version", "build"], registry=registry
    )
    info.labels(gateway.__version__, gateway.build.kind()).set(1)


class Metrics:
    def __init__(
        self, registry: CollectorRegistry | None = None, worker: int | None = None
    ) -> None:
        """`worker`: this process is worker i of a supervisor (multiprocess files)."""
        if worker is not None and not values.ValueClass._multiprocess:
            raise RuntimeError("a worker's metrics need share_values() before they are made")
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._worker = None if worker is None else str(worker)
        self._tallies: list[Tally | Timings] = []
        r = self.registry
        self.requests = Counter(
            PREFIX + "requests", "Webhook requests answered, by HTTP status.",
            ["source", "code"], registry=r,
        )  # fmt: skip
        self.ack_duration = Histogram(
            PREFIX + "ack_duration_seconds",
            "Time from a request's last byte to its 200, including the durable admit.",
            ["source"], buckets=ACK_BUCKETS, registry=r,
        )  # fmt: skip
        self.admitted = Counter(
            PREFIX + "events_admitted", "Events persisted and queued.", ["source"], registry=r
        )
        self.duplicates = Counter(
            PREFIX + "duplicates", "Events acked as already seen.", ["source"], registry=r
        )
        self.rejected = Counter(
            PREFIX + "rejected", "Requests refused by a source: authentication or payload.",
            ["source", "reason"], registry=r,
        )  # fmt: skip
        self.key_conflicts = Counter(
            PREFIX + "key_conflicts",
            "Events whose idempotency key was seen before with another body.",
            ["source"], registry=r,
        )  # fmt: skip
        self.unrouted = Counter(
            PREFIX + "unrouted", "Events that matched no route.", ["source"], registry=r
        )
        self.store_errors = Counter(
            PREFIX + "store_errors", "Store calls that failed or missed their deadline.",
            ["op"], registry=r,
        )  # fmt: skip
        self.connections_refused = Counter(
            PREFIX + "connections_refused", "Connections closed at once: over the cap.",
            registry=r,
        )  # fmt: skip
        self.forward_attempts = Counter(
            PREFIX + "forward_attempts", "Delivery attempts to targets, by outcome.",
            ["target", "outcome"], registry=r,
        )  # fmt: skip
        self.forward_duration = Histogram(
            PREFIX + "forward_duration_seconds", "Duration of one delivery attempt.",
            ["target"], buckets=FORWARD_BUCKETS, registry=r,
        )  # fmt: skip
        self.dead_letters = Counter(
            PREFIX + "dead_letter", "Events moved to a dead-letter stream.", ["target"], registry=r
        )
        # multiprocess_mode applies to workers only: every worker reads the same
        # queue (max), each has its own spool (sum).
        self.queue_depth = Gauge(
            PREFIX + "queue_depth", "Events not yet delivered (queued or waiting to retry).",
            ["target"], registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.queue_oldest_age = Gauge(
            PREFIX + "queue_oldest_age_seconds", "Age of the oldest queued event.",
            ["target"], registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.spool_depth = Gauge(
            PREFIX + "spool_depth",
            "Events in the local spool (Redis unavailable), not yet delivered or moved to Redis.",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.spool_events = Counter(
            PREFIX + "spool_events", "Events acked from the local spool (Redis unavailable).",
            registry=r,
        )  # fmt: skip
        self.store_mode = Gauge(
            PREFIX + "store_mode", STORE_MODE_HELP,
            ["mode"] if worker is None else ["mode", "worker"],
            registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.set_store_mode("")  # every mode shows (0) before the store is chosen
        if worker is None:  # a worker's supervisor reports these for the whole gateway
            # process_cpu_seconds_total, process_resident_memory_bytes, open fds...
            ProcessCollector(registry=r)
            build_info(r)
        self.store_admit_errors = self.store_errors.labels("admit")

    def set_store_mode(self, current: str) -> None:
        for mode in STORE_MODES:
            child = self.store_mode.labels(mode, *((self._worker,) if self._worker else ()))
            child.set(1 if mode == current else 0)

    def source(self, name: str) -> SourceMetrics:
        return SourceMetrics(self, name)

    def target(self, name: str) -> TargetMetrics:
        return TargetMetrics(self, name)

    def statuses(self, source: str) -> StatusCounter:
        """For requests no source took: the listener's own answers."""
        return StatusCounter(self, source, answers_200=False)

    def tally(self, child: Counter) -> Tally | Counter:
        """A worker's child as it is: its value is in the shared file at once."""
        if self._worker is not None:
            return child
        tally = Tally(child)
        self._tallies.append(tally)
        return tally

    def timings(self, child: Histogram) -> Timings | Histogram:
        if self._worker is not None:
            return child
        timings = Timings(child)
        self._tallies.append(timings)
        return timings

    def fold(self) -> None:
        """Move every tally into its metric's value."""
        for tally in self._tallies:
            tally.fold()

    def exposition(self) -> bytes:
        self.fold()
        return generate_latest(self.registry)


class Tally:
    """A counter child's increments as a plain int, until folded."""

    __slots__ = ("_child", "n")

    def __init__(self, child: Counter) -> None:
        self._child = child
        self.n = 0

    def inc(self) -> None:
        self.n += 1

    def fold(self) -> None:
        n, self.n = self.n, 0
        if n:
            self._child.inc(n)


class Timings:
    """A histogram child's observations, counted per bucket until folded: the
    bucket is the first bound >= the value, as Histogram.observe picks it."""

    __slots__ = ("_bounds", "_child", "_counts", "_sum")

    def __init__(self, child: Histogram) -> None:
        self._child = child
        self._bounds: tuple[float, ...] = tuple(child._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        self._counts[bisect_left(self._bounds, seconds)] += 1
        self._sum += seconds

    def fold(self) -> None:
        counts, self._counts = self._counts, [0] * len(self._bounds)
        total, self._sum = self._sum, 0.0
        if not any(counts):
            return
        # The values behind Histogram.observe (prometheus-client 0.26, pinned).
        self._child._sum.inc(total)
        for bucket, n in zip(self._child._buckets, counts, strict=True):
            if n:
                bucket.inc(n)


class CountersBy:
    """The children of a counter whose first label is fixed (a source) and
    whose second comes from a small fixed set (a status, a reason), each
    made on first use so the hot path never calls `labels()` twice."""

    __slots__ = ("_children", "_counter", "_first")

    def __init__(
        self, counter: Counter, first: str, kept: dict[object, Tally | Counter] | None = None
    ) -> None:
        """`kept`: children made up front (a tally for the hot ones)."""
        self._counter = counter
        self._first = first
        self._children: dict[object, Tally | Counter] = kept or {}

    def inc(self, second: object) -> None:
        child = self._children.get(second)
        if child is None:
            child = self._children[second] = self._counter.labels(self._first, str(second))
        child.inc()


class StatusCounter:
    """requests_total children of one source, one per status; 200s tallied."""

    __slots__ = ("_statuses",)

    def __init__(self, metrics: Metrics, source: str, answers_200: bool = True) -> None:
        """`answers_200`: False for requests no source took (404s, 405s), so that
        no `code="200"` series shows for them."""
        kept: dict[object, Tally | Counter] = {}
        if answers_200:
            kept[200] = metrics.tally(metrics.requests.labels(source, "200"))
        self._statuses = CountersBy(metrics.requests, source, kept)

    def answered(self, status: int) -> None:
        self._statuses.inc(status)


class SourceMetrics(StatusCounter):
    """One source's children, bound once."""

    __slots__ = ("_reasons", "ack", "admitted", "duplicates", "key_conflicts", "name", "unrouted")

    def __init__(self, metrics: Metrics, name: str) -> None:
        super().__init__(metrics, name)
        self.name = name
        self.ack = metrics.timings(metrics.ack_duration.labels(name))
        self.admitted = metrics.tally(metrics.admitted.labels(name))
        self.duplicates = metrics.duplicates.labels(name)
        self.unrouted = metrics.unrouted.labels(name)
        self.key_conflicts = metrics.key_conflicts.labels(name)
        self._reasons = CountersBy(metrics.rejected, name)

    def rejected(self, reason: str) -> None:
        self._reasons.inc(reason)


class TargetMetrics:
    """One target's children, bound once (every outcome shows from the start)."""

    __slots__ = ("_outcomes", "dead_letters", "depth", "duration", "oldest_age")

    def __init__(self, metrics: Metrics, name: str) -> None:
        self._outcomes: dict[str, Tally | Counter] = {
            o: metrics.forward_attempts.labels(name, o) for o in OUTCOMES
        }
        self._outcomes["delivered"] = metrics.tally(
            metrics.forward_attempts.labels(name, "delivered")
        )
        self.duration = metrics.timings(metrics.forward_duration.labels(name))
        self.dead_letters = metrics.dead_letters.labels(name)
        self.depth = metrics.queue_depth.labels(name)
        self.oldest_age = metrics.queue_oldest_age.labels(name)

    def outcome(self, name: str) -> None:
        self._outcomes[name].inc()
