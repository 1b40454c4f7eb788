"""Metrics across `workers: N > 1` processes, in prometheus_client's multiprocess
file format.

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
supervisor's is "supervisor").
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
    ProcessCollector,
    generate_latest,
    values,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from gateway.metrics import PREFIX, build_info


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
