"""Prometheus metrics (DESIGN.md §5), with label children bound up front.

The hot path never calls `labels()`: each source gets a `SourceMetrics` whose
children are created once, and per-status counters are cached in a dict.

With `workers: N > 1` each worker keeps its values in files that the
supervisor's `WorkersMetrics` merges, in the format of prometheus_client's
multiprocess mode: `share_values(directory)` makes every value a C double
inside this process's memory-mapped file (`_SharedValue`), so an increment
costs about what the in-memory value costs (prometheus_client's own
multiprocess values cost ~10% of throughput: a getpid() and a dict lookup
per call) and survives a kill -9. The merge: counters and histograms summed
over every worker that ever ran (a dead worker's files are folded into an
archive, so no total goes down), queue gauges the max over live workers
(they all read the same queue), spool_depth their sum, store_mode one series
per worker, process_* one series per process (`worker` label, the
supervisor's is "supervisor"). A single process (workers: 1) keeps
prometheus_client's plain in-memory values.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    values,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from prometheus_client.utils import INF

import gateway

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
    build = Gauge(PREFIX + "build_info", "Build information.", ["version"], registry=registry)
    build.labels(gateway.__version__).set(1)


class Metrics:
    def __init__(
        self, registry: CollectorRegistry | None = None, worker: int | None = None
    ) -> None:
        """`worker`: this process is worker i of a supervisor (multiprocess files)."""
        if worker is not None and not values.ValueClass._multiprocess:
            raise RuntimeError("a worker's metrics need share_values() before they are made")
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._worker = None if worker is None else str(worker)
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
        return StatusCounter(self.requests, source)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class CountersBy:
    """The children of a counter whose first label is fixed (a source) and
    whose second comes from a small fixed set (a status, a reason), each
    made on first use so the hot path never calls `labels()` twice."""

    __slots__ = ("_children", "_counter", "_first")

    def __init__(self, counter: Counter, first: str) -> None:
        self._counter = counter
        self._first = first
        self._children: dict[object, Counter] = {}

    def inc(self, second: object) -> None:
        child = self._children.get(second)
        if child is None:
            child = self._children[second] = self._counter.labels(self._first, str(second))
        child.inc()


class StatusCounter:
    """requests_total children of one source, one per status."""

    __slots__ = ("_statuses",)

    def __init__(self, requests: Counter, source: str) -> None:
        self._statuses = CountersBy(requests, source)

    def answered(self, status: int) -> None:
        self._statuses.inc(status)


class SourceMetrics(StatusCounter):
    """One source's children, bound once."""

    __slots__ = ("_reasons", "ack", "admitted", "duplicates", "key_conflicts", "name", "unrouted")

    def __init__(self, metrics: Metrics, name: str) -> None:
        super().__init__(metrics.requests, name)
        self.name = name
        self.ack = metrics.ack_duration.labels(name)
        self.admitted = metrics.admitted.labels(name)
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
        self._outcomes = {o: metrics.forward_attempts.labels(name, o) for o in OUTCOMES}
        self.duration = metrics.forward_duration.labels(name)
        self.dead_letters = metrics.dead_letters.labels(name)
        self.depth = metrics.queue_depth.labels(name)
        self.oldest_age = metrics.queue_oldest_age.labels(name)

    def outcome(self, name: str) -> None:
        self._outcomes[name].inc()


def share_values(directory: str) -> None:
    """Make every metric value made from now on live in this process's files
    under `directory` (a worker of a supervisor); see the module docstring."""
    files: dict[str, Any] = {}  # file prefix -> MmapedDict
    pid = os.getpid()

    class SharedValue(_SharedValue):
        def __init__(
            self, typ: str, metric_name: str, name: str, labelnames: Iterable[str],
            labelvalues: Iterable[str], help_text: str, multiprocess_mode: str = "",
            **kwargs: object,
        ) -> None:  # fmt: skip
            # The names MultiProcessCollector and mark_process_dead expect.
            prefix = f"gauge_{multiprocess_mode}" if typ == "gauge" else typ
            file = files.get(prefix)
            if file is None:
                path = os.path.join(directory, f"{prefix}_{pid}.db")
                file = files[prefix] = MmapedDict(path)  # type: ignore[no-untyped-call]
            key = mmap_key(metric_name, name, list(labelnames), list(labelvalues), help_text)
            file.read_value(key)  # allocates the entry: (value, timestamp) doubles
            # A file that grows is mapped anew; this view keeps the old mapping
            # alive, and both map the same file.
            super().__init__(ctypes.c_double.from_buffer(file._m, file._positions[key]))

    values.ValueClass = SharedValue


class _SharedValue:
    """A metric value that is a C double in a shared memory-mapped file:
    MutexValue's interface, read and written in place."""

    _multiprocess = True

    def __init__(self, slot: ctypes.c_double) -> None:
        self._slot = slot
        self._lock = threading.Lock()

    def inc(self, amount: float) -> None:
        with self._lock:
            self._slot.value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        with self._lock:
            self._slot.value = value

    def set_exemplar(self, exemplar: object) -> None:
        """Exemplars are not kept in multiprocess mode."""

    def get(self) -> float:
        with self._lock:
            return float(self._slot.value)

    def get_exemplar(self) -> None:
        return None


class WorkersMetrics:
    """The supervisor's /metrics: its workers' multiprocess files merged, the
    process metrics of every process, build_info and worker restarts."""

    def __init__(self, directory: str, workers: Callable[[], Mapping[str, int]]) -> None:
        """`directory`: the workers' `share_values` directory; `workers`: the
        live workers' pids by worker name."""
        self.directory = directory
        self.registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(self.registry, path=directory)  # type: ignore[no-untyped-call]
        self.registry.register(_ProcessesCollector(workers))
        build_info(self.registry)
        self.restarts = Counter(
            PREFIX + "worker_restarts", "Worker processes restarted after an unexpected exit.",
            ["worker"], registry=self.registry,
        )  # fmt: skip

    def worker_exited(self, pid: int) -> None:
        """Drop the dead process's live gauges; fold its counters and histograms
        into the archive files, so the sums keep them (no total goes down) and
        the files a scrape reads do not grow with every restart."""
        mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]
        for kind in ("counter", "histogram"):
            dead = os.path.join(self.directory, f"{kind}_{pid}.db")
            if not os.path.exists(dead):
                continue
            # The collector reads `<kind>_*.db` and sums equal keys across files.
            path = os.path.join(self.directory, f"{kind}_archive.db")
            archive: Any = MmapedDict(path)  # type: ignore[no-untyped-call]
            try:
                for key, value, _, _ in _read_all(dead):
                    total, _ = archive.read_value(key)
                    archive.write_value(key, total + value, 0.0)
            finally:
                archive.close()
            os.unlink(dead)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _ProcessesCollector(Collector):
    """process_* of the supervisor and of each live worker, one series per
    process with a `worker` label ("supervisor" for this process)."""

    def __init__(self, workers: Callable[[], Mapping[str, int]]) -> None:
        self._workers = workers
        self._collectors: dict[int, ProcessCollector] = {}

    def collect(self) -> Iterable[Metric]:
        processes = {"supervisor": os.getpid(), **self._workers()}
        self._collectors = {
            pid: self._collectors.get(pid) or ProcessCollector(pid=_constant(pid), registry=None)
            for pid in processes.values()
        }
        families: dict[str, Metric] = {}
        for name, pid in processes.items():
            for family in self._collectors[pid].collect():
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    labels = {**sample.labels, "worker": name}
                    merged.add_sample(sample.name, labels, sample.value)
        return list(families.values())


def _read_all(path: str) -> list[tuple[str, float, float, int]]:
    """(key, value, timestamp, position) of every entry of a multiprocess file."""
    return list(MmapedDict.read_all_values_from_file(path))  # type: ignore[no-untyped-call]


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid
