"""Child processes of a benchmark run, so that none of them outlives it.

Each child runs in its own session (so its own process group): a Ctrl-C in the
terminal reaches only the harness, which then stops every child deliberately,
and stopping a group also reaps whatever that child spawned itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

POLL_INTERVAL_S = 0.02
STOP_GRACE_S = 5.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ChildFailed(RuntimeError):
    """A child exited, or never reached the state we waited for."""


@dataclass(slots=True)
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path
    ready_s: float | None = None  # from exec to ready, for the children waited for

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"exited {self.returncode}"
        return f"<Child {self.name} pid={self.process.pid} {state}>"

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the process (all its threads) so far; None once gone."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return None
        # Fields after the parenthesised command name (which may contain spaces):
        # utime and stime are fields 14 and 15 of proc(5), in clock ticks.
        fields = stat.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def rss_mb(self) -> float | None:
        """Resident memory of the process now, in MiB to 0.1; None once gone."""
        rss = rss_mib(self.process.pid)
        return None if rss is None else round(rss, 1)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.output().splitlines()[-lines:]) or "(no output)"


class Children:
    """Starts children with their output in `log_dir`; stops them all on exit."""

    def __init__(self, log_dir: Path, grace_s: float = STOP_GRACE_S) -> None:
        self._log_dir = log_dir
        self._grace_s = grace_s
        self._running: list[Child] = []

    def __repr__(self) -> str:
        return f"<Children running={[c.name for c in self._running]}>"

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Child:
        log_path = self._log_dir / f"{name}.log"
        with log_path.open("wb") as log:  # the child keeps its own copy of the fd
            try:
                process = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **(env or {})},
                    cwd=cwd,
                    start_new_session=True,
                )
            except OSError as exc:  # e.g. the program is not installed
                raise ChildFailed(f"cannot start {name}: {exc}") from None
        child = Child(name, list(argv), process, log_path)
        self._running.append(child)
        return child

    def wait(self, child: Child, timeout_s: float) -> int:
        """Wait for a child that ends by itself (wrk); stop it if it overruns."""
        try:
            code = child.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.stop(child)
            raise ChildFailed(f"{child.name} still running after {timeout_s:g}s") from None
        # Forgotten only once it has exited: if Ctrl-C interrupts the wait, it is
        # still on the list that `stop_all` goes through.
        self._forget(child)
        return code

    def stop(self, child: Child) -> int:
        """SIGTERM the child's group, SIGKILL it after the grace period."""
        self._forget(child)
        _signal_group(child, signal.SIGTERM)
        try:
            child.process.wait(self._grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(child, signal.SIGKILL)
            child.process.wait()
        # The leader is gone; anything it left behind in its group goes too.
        _signal_group(child, signal.SIGKILL)
        return child.process.returncode

    def sessions(self) -> set[int]:
        """The session ids of the running children (each leads its own session)."""
        return {child.process.pid for child in self._running}

    def stop_all(self) -> None:
        for child in reversed(list(self._running)):
            self.stop(child)

    def _forget(self, child: Child) -> None:
        if child in self._running:
            self._running.remove(child)


def _signal_group(child: Child, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has already exited
        os.killpg(child.process.pid, signum)


def rss_mib(pid: int) -> float | None:
    """Resident memory (VmRSS) of a process now, in MiB, unrounded; None once gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):  # a zombie has none
            return int(line.split()[1]) / 1024
    return None


def wait_for(ready: Callable[[], bool], child: Child, timeout_s: float, what: str) -> None:
    """Poll `ready` until it holds, failing early if `child` exits first."""
    wait_until(ready, [child], timeout_s, what)


def wait_until(
    ready: Callable[[], bool],
    watched: Sequence[Child],
    timeout_s: float,
    what: str,
    *,
    poll_s: float = POLL_INTERVAL_S,
) -> float:
    """Poll `ready` every `poll_s` until it holds and return the time.monotonic() it was
    seen to; fail early if any watched child exits first."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        for child in watched:
            if child.returncode is not None:
                raise ChildFailed(f"{child.name} exited with code {child.returncode} before {what}")
        if time.monotonic() > deadline:
            names = ", ".join(child.name for child in watched)
            raise ChildFailed(f"{names}: not {what} within {timeout_s:g}s")
        time.sleep(poll_s)
    return time.monotonic()


def free_ports(count: int) -> list[int]:
    """Ports the kernel just considered free, all distinct (held open together).

    Another process could take one before our child binds it; on a benchmark box
    that race is rare, and it shows up as a clear start failure, not a wrong number.
    """
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
