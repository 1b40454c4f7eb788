"""Where things run (CPU pinning) and what they run on (machine facts for the record)."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

# What the systems run on, recorded with every run.
PACKAGES = ("uvloop", "httptools", "redis", "hiredis", "fastapi", "uvicorn", "aiohttp")


@dataclass(frozen=True, slots=True)
class Pinning:
    """The server under test gets a core to itself; the load (wrk, Redis, sink) the rest.

    Without this, wrk and the server fight over the same cores and the result says
    as much about the scheduler as about the server. No CPUs means "not pinned".
    """

    server_cpus: tuple[int, ...]
    load_cpus: tuple[int, ...]
    nproc: int
    note: str

    @property
    def pinned(self) -> bool:
        return bool(self.server_cpus)

    @property
    def wrk_threads(self) -> int:
        # One wrk thread per load core saturates a single-core server; more would
        # only time-share the load cores.
        return min(2, max(1, self.nproc - 1))

    def server(self, argv: Sequence[str]) -> list[str]:
        return _taskset(self.server_cpus, argv)

    def load(self, argv: Sequence[str]) -> list[str]:
        return _taskset(self.load_cpus, argv)


def _taskset(cpus: tuple[int, ...], argv: Sequence[str]) -> list[str]:
    # taskset execs the command, so the pid we manage is the command's own.
    if not cpus:
        return list(argv)
    return ["taskset", "-c", ",".join(map(str, cpus)), *argv]


def plan_pinning(cpus: Collection[int], have_taskset: bool) -> Pinning:
    ordered = tuple(sorted(cpus))
    if len(ordered) < 2:
        return Pinning((), (), len(ordered), "not pinned: only 1 CPU")
    if not have_taskset:
        return Pinning((), (), len(ordered), "not pinned: taskset not found")
    server, load = ordered[:1], ordered[1:]
    note = (
        f"server under test (every system in turn: the bare servers, the frameworks, the"
        f" gateway; the bare client) on CPU {_cpu_list(server)}; wrk, redis and the sink on"
        f" CPU {_cpu_list(load)} (taskset)"
    )
    return Pinning(server, load, len(ordered), note)


def _cpu_list(cpus: tuple[int, ...]) -> str:
    return ",".join(map(str, cpus))


def this_machine_pinning() -> Pinning:
    # The CPUs we may use, not the host's count: a container may see 64 and get 2.
    return plan_pinning(os.sched_getaffinity(0), shutil.which("taskset") is not None)


class CpuWatch:
    """CPU used during one measurement, as shares of a core: by the server process,
    on the load CPUs (wrk and Redis, and anything else that ran there), and by
    processes that are not ours at all (`ours`: the session ids of our children).

    A server well under 100% while the load CPUs are saturated was not the limit;
    either number off its usual value means something else competed for the CPU,
    and `other_share` says how much of it came from outside the run.
    """

    __slots__ = (
        "_load_cpus",
        "_load_start",
        "_others_start",
        "_ours",
        "_server",
        "_server_start",
        "_start",
        "_steal_start",
    )

    def __init__(
        self,
        server_cpu_seconds: Callable[[], float | None],
        pinning: Pinning,
        ours: Callable[[], Collection[int]] = frozenset,
    ) -> None:
        self._server = server_cpu_seconds
        self._load_cpus = pinning.load_cpus
        self._ours = ours
        self._start = time.monotonic()
        self._server_start = server_cpu_seconds()
        self._load_start = cpu_ticks(self._load_cpus)
        self._others_start = foreign_cpu_seconds(ours())
        self._steal_start = steal_ticks()

    def other_share(self) -> float:
        """Share of a core used by processes outside the run (at least: a process that
        started and ended within the interval is not seen)."""
        now = foreign_cpu_seconds(self._ours())
        used = sum(max(0.0, cpu - self._others_start.get(pid, 0.0)) for pid, cpu in now.items())
        return round(used / (time.monotonic() - self._start), 3)

    def server_share(self) -> float | None:
        now = self._server()
        if now is None or self._server_start is None:
            return None
        return round((now - self._server_start) / (time.monotonic() - self._start), 3)

    def steal_share(self) -> float | None:
        """Share of all CPUs' time the hypervisor gave to other guests (steal): on a
        shared virtual machine, competition that no process of ours can see."""
        return steal_since(self._steal_start)

    def load_share(self) -> float | None:
        """Busy share of the load CPUs together (1.0: all of them fully busy)."""
        if not self._load_cpus:
            return None
        busy_start, total_start = self._load_start
        busy, total = cpu_ticks(self._load_cpus)
        elapsed = total - total_start
        return round((busy - busy_start) / elapsed, 3) if elapsed else None


def foreign_cpu_seconds(ours: Collection[int]) -> dict[int, float]:
    """CPU seconds so far of every user-space process outside the sessions `ours`
    and other than this one: what else is running on the machine."""
    found = {}
    me = os.getpid()
    for pid, fields in _process_stats():
        # After the parenthesised name: state ppid pgrp session ... utime(14) stime(15).
        if pid in (me, KTHREADD) or int(fields[1]) == KTHREADD or int(fields[3]) in ours:
            continue  # kernel threads work for everyone, us included
        found[pid] = _cpu_seconds(fields)
    return found


def tree_cpu_seconds(root: int) -> float | None:
    """CPU seconds so far of `root` and of every live process below it (a gateway
    supervisor and its workers), each with its reaped children's: a worker that exits
    and is restarted during a measurement moves into its supervisor's cutime/cstime,
    so nothing is lost or counted twice. None once `root` is gone."""
    tree = process_tree(root)
    return sum(tree.values()) if tree else None


def process_tree(root: int) -> dict[int, float]:
    """`root` and every live process below it: pid -> CPU seconds so far, reaped
    children included (cutime + cstime). Empty once `root` is gone."""
    cpu: dict[int, float] = {}
    below: dict[int, list[int]] = {}
    for pid, fields in _process_stats():
        cpu[pid] = _cpu_seconds(fields) + (int(fields[13]) + int(fields[14])) / _CLOCK_TICKS
        below.setdefault(int(fields[1]), []).append(pid)
    tree: dict[int, float] = {}
    todo = [root] if root in cpu else []
    while todo:
        pid = todo.pop()
        tree[pid] = cpu[pid]
        todo += below.get(pid, [])
    return tree


def _process_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, the /proc/<pid>/stat fields after the command name) of every process now."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # it exited meanwhile
            continue
        # The name is parenthesised and may contain spaces: split after its ")".
        yield int(entry.name), stat.rpartition(")")[2].split()


def _cpu_seconds(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


KTHREADD = 2  # the parent of every kernel thread
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks(cpus: Collection[int]) -> tuple[int, int]:
    """(busy, total) clock ticks of these CPUs since boot, from /proc/stat."""
    busy = total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
            total += sum(ticks)
            busy += sum(ticks) - ticks[3] - ticks[4]
    return busy, total


def steal_ticks() -> tuple[int, int]:
    """(steal, total) clock ticks of all CPUs since boot, from /proc/stat's first line."""
    ticks = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return ticks[7], sum(ticks)


def steal_since(start: tuple[int, int], now: tuple[int, int] | None = None) -> float | None:
    """The steal share of all CPUs' time from `start` to `now` (steal_ticks() readings;
    `now` read here when not given)."""
    stolen, total = steal_ticks() if now is None else now
    return round((stolen - start[0]) / (total - start[1]), 3) if total > start[1] else None


def busy_share(cpus: Collection[int], seconds: float) -> float | None:
    """How busy these CPUs were over the next `seconds` (0-1), by whatever ran there.

    Taken before a run: a machine that is not idle then (other tests, another
    benchmark) makes every number of the run lower and noisier than it should be."""
    busy_start, total_start = cpu_ticks(cpus)
    time.sleep(seconds)
    busy, total = cpu_ticks(cpus)
    return round((busy - busy_start) / (total - total_start), 3) if total > total_start else None


def machine_facts(pinning: Pinning, busy_before: float | None = None) -> dict[str, Any]:
    return {
        "nproc": pinning.nproc,
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis": _version(["redis-server", "--version"], r"v=(\S+)"),
        "wrk": _version(["wrk", "--version"], r"^wrk (\S+)"),
        "packages": {name: _package_version(name) for name in PACKAGES},
        "pinning": {
            "pinned": pinning.pinned,
            "server_cpus": list(pinning.server_cpus),
            "load_cpus": list(pinning.load_cpus),
            "note": pinning.note,
        },
        "busy_before": busy_before,
        "executable": sys.executable,
    }


def _cpu_model() -> str:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return match[1].strip() if match else "unknown"


def _version(argv: list[str], pattern: str) -> str:
    try:
        # wrk prints its version with usage and exits 1, so the exit code is ignored.
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    match = re.search(pattern, done.stdout + done.stderr, re.MULTILINE)
    return match[1] if match else "unknown"


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
