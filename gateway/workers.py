"""`workers: N > 1`: a supervisor and N gateway processes on one port.

The process started (`webhook-gateway run`) becomes a small supervisor, on
the standard asyncio loop, with none of the I/O stack. It:

- binds the public port with SO_REUSEPORT without listening on it, for as
  long as it runs: a port another program holds fails the start (exit 1) as
  with one process, no other program can take the port while a worker
  restarts, and port 0 is resolved once for every worker;
- starts the workers: `python -m gateway run --worker I`, each in its own
  process group (a terminal's Ctrl-C reaches the supervisor only, which
  passes it on once), with a pickled `WorkerSpec` on its stdin: the config
  (a worker restarted later runs the very config its siblings run, even if
  the file changed since) and the supervisor's runtime directory
  (gateway.runtime_dir: admin sockets, metrics files for
  gateway.metrics_workers.share_values). The supervisor keeps that stdin pipe open:
  its end-of-file tells the worker that the supervisor is gone (even by
  kill -9), and the worker drains and exits as on SIGTERM. Each worker is a
  whole gateway (gateway.service): it listens on the port with SO_REUSEPORT
  (the kernel spreads connections over the workers), admits in its own
  batcher, delivers as forwarder consumer "<name>-w<i>" (stable across its
  restarts, distinct from its siblings) and spools into its own file
  (gateway.spool_files);
- serves the admin listener: /metrics merges the workers' multiprocess files
  (gateway.metrics_workers.WorkersMetrics), /healthz answers while the supervisor
  runs (it restarts workers itself), /readyz is 200 only when every worker's
  own /readyz is (asked over the worker's private unix socket), else 503
  naming the workers that are not (and why), and 503 from the first signal on;
- kills a started worker whose /healthz goes unanswered 3 times in a row,
  10 s apart (a hung event loop: what the kubelet's liveness probe does for
  one process; the supervisor's own /healthz stays 200), and so restarts it;
- restarts a worker that exits unexpectedly, after 0.5 s doubling to 30 s
  while it keeps dying quickly (back to 0.5 s once it ran a minute), logging
  `worker_exited` and counting webhook_gateway_worker_restarts_total. A
  worker that exits before it ever answered is a start failure: the
  supervisor stops the others and exits 1;
- on SIGTERM/SIGINT passes the signal to every worker, each drains as one
  gateway does, and exits 0 once all have exited 0 (a second signal is passed
  on too: the workers stop waiting). A worker still running after
  shutdown_grace + 10 s is killed (exit 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import structlog
import uvloop

import gateway
import gateway.build
from gateway import replies
from gateway.admin import READY, AdminRouter, ask
from gateway.config import Config, Listen, redacted
from gateway.connections import Connections
from gateway.logs import configure
from gateway.metrics_workers import WorkersMetrics, share_values
from gateway.protocol import HttpProtocol
from gateway.replies import Reply
from gateway.runtime_dir import admin_socket, metrics_dir, new_runtime_dir
from gateway.spool_files import warn_of_stranded_spools

log = structlog.get_logger("gateway.supervisor")

_RESTART_FIRST = 0.5  # seconds before restarting a worker that exited
_RESTART_MAX = 30.0  # the delay doubles up to this while a worker keeps exiting quickly
_STABLE = 60.0  # a worker that ran this long is restarted after _RESTART_FIRST again
_STOP_MARGIN = 10.0  # beyond shutdown_grace: a worker closes its store and spool after it
_KILL_WAIT = 5.0
_POLL = 0.02  # seconds between asks of a starting worker
_WATCH_INTERVAL = 10.0  # seconds between liveness asks of each running worker
_WATCH_WITHIN = 3.0  # an ask unanswered this long is a miss
_WATCH_MISSES = 3  # misses in a row before the worker is killed (and so restarted)
_ADMIN_CONNECTIONS = 64  # probes and scrapes only
_CLEAN_EXITS = (0, -signal.SIGTERM, -signal.SIGINT)  # a signal before its handlers: idle


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker gets from its supervisor, pickled on its stdin."""

    config: Config
    runtime_dir: str  # the admin sockets, and the metrics files under metrics/


# -- a worker -------------------------------------------------------------------


def worker_main(index: int) -> int:
    """`webhook-gateway run --worker I`: started by the supervisor only."""
    if sys.stdin.isatty():
        print("webhook-gateway: --worker is for the supervisor (workers: N)", file=sys.stderr)
        return 2
    try:
        spec = pickle.load(sys.stdin.buffer)  # from our own parent, never from a file
    except (EOFError, pickle.UnpicklingError):
        return 2  # the supervisor died before it sent the config
    configure(spec.config.log_level)
    structlog.contextvars.bind_contextvars(worker=index)  # on every line it logs
    share_values(metrics_dir(spec.runtime_dir))
    from gateway.service import Gateway, WorkerRole  # the I/O stack, in workers only

    async def run(worker: Gateway) -> int:
        _stop_when_orphaned(worker.stop)
        return await worker.run()

    role = WorkerRole(index, admin_socket(spec.runtime_dir, index))
    return uvloop.run(run(Gateway(spec.config, role)))  # under cli.run_process


def _stop_when_orphaned(stop: Callable[[str], None]) -> None:
    """Stdin is a pipe the supervisor holds open and never writes to after the
    spec: its end-of-file means the supervisor is gone. (Not PR_SET_PDEATHSIG:
    it fires once per exiting thread of the parent, and a second signal would
    skip the drain.)"""
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            if os.read(0, 4096):
                return  # nothing is ever sent; ignore it
        except BlockingIOError:
            return
        except OSError:
            pass
        loop.remove_reader(0)
        stop("supervisor_gone")

    loop.add_reader(0, readable)


# -- the supervisor ---------------------------------------------------------------


def supervise(config: Config) -> int:
    return asyncio.run(Supervisor(config).run())


class _Worker:
    def __init__(self, index: int, socket_path: str) -> None:
        self.index = index
        self.socket = socket_path
        self.proc: asyncio.subprocess.Process | None = None
        self.started = False  # answered /healthz once: later exits are restarted
        self.missed = 0  # liveness asks unanswered in a row
        self.final: int | None = None  # its exit code once the supervisor stopped it

    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.runtime_dir = new_runtime_dir()
        self.metrics_dir = metrics_dir(self.runtime_dir)
        self.workers = [
            _Worker(i, admin_socket(self.runtime_dir, i)) for i in range(config.workers)
        ]
        self.metrics = WorkersMetrics(self.metrics_dir, self._pids)
        for worker in self.workers:
            self.metrics.restarts.labels(str(worker.index))  # shows 0 from the start
        self.stopping = asyncio.Event()
        self.admin = AdminRouter(self.metrics.exposition, self._readiness, self.stopping.is_set)
        self.failed = False  # a worker could not start
        self._spec = b""

    def _pids(self) -> dict[str, int]:
        return {str(w.index): w.proc.pid for w in self.workers if w.proc and w.running()}

    async def run(self) -> int:
        try:
            reserved = _reserve(self.config.listen)
            try:
                return await self._run(reserved[0].getsockname()[1])
            finally:
                for sock in reserved:
                    sock.close()
        finally:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)

    async def _run(self, port: int) -> int:
        loop = asyncio.get_running_loop()
        config = replace(self.config, listen=replace(self.config.listen, port=port))
        self._spec = pickle.dumps(WorkerSpec(config, self.runtime_dir))
        connections = Connections(_ADMIN_CONNECTIONS)
        admin = await loop.create_server(
            lambda: HttpProtocol(self.admin, config.limits, connections),
            config.admin.host,
            config.admin.port,
        )
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        log.info(
            "started",
            version=gateway.__version__,
            build=gateway.build.kind(),
            port=port,
            admin_port=int(admin.sockets[0].getsockname()[1]),
            workers=len(self.workers),
            config=redacted(self.config),
        )
        warn_of_stranded_spools(config)
        tasks = [loop.create_task(self._keep_running(w)) for w in self.workers]
        watchdog = loop.create_task(self._watchdog())
        await self.stopping.wait()
        await self._wait_for_exits(tasks)
        watchdog.cancel()
        admin.close()
        connections.close_all()
        finals = {str(w.index): w.final for w in self.workers if w.final is not None}
        clean = not self.failed and all(code in _CLEAN_EXITS for code in finals.values())
        if clean:
            log.info("stopped", workers=finals)
            return 0
        log.error("stopped", workers=finals)
        return 1

    # -- one worker's life ----------------------------------------------------

    async def _keep_running(self, worker: _Worker) -> None:
        delay = _RESTART_FIRST
        while not self.stopping.is_set():
            began = time.monotonic()
            code = await self._run_once(worker)
            if self.stopping.is_set():
                worker.final = code
                return
            if not worker.started:
                log.error("worker_failed_to_start", worker=worker.index, exit=_exit(code))
                self.failed = True
                self._stop(signal.SIGTERM)
                return
            if time.monotonic() - began >= _STABLE:
                delay = _RESTART_FIRST
            pid = worker.proc.pid if worker.proc is not None else None
            log.error(
                "worker_exited", worker=worker.index, pid=pid, exit=_exit(code), restart_in=delay
            )
            self.metrics.restarts.labels(str(worker.index)).inc()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.stopping.wait()
            delay = min(delay * 2, _RESTART_MAX)

    async def _run_once(self, worker: _Worker) -> int | None:
        """Start the worker and wait for its exit: its code (None: no start)."""
        try:
            proc = await self._spawn(worker)
        except OSError as exc:
            log.error("worker_spawn_failed", worker=worker.index, error=str(exc))
            return None
        exited = asyncio.ensure_future(proc.wait())
        while not worker.started and not exited.done():
            status, _ = await ask(worker.socket, "/healthz")
            worker.started = status == 200
            if not worker.started:
                await asyncio.wait([exited], timeout=_POLL)
        code = await exited
        self.metrics.worker_exited(proc.pid)
        return code

    async def _spawn(self, worker: _Worker) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "gateway", "run", "--worker", str(worker.index)),
            stdin=asyncio.subprocess.PIPE,
            process_group=0,
        )
        worker.proc = proc
        worker.missed = 0
        assert proc.stdin is not None
        proc.stdin.write(self._spec)  # and kept open: see _stop_when_orphaned
        with contextlib.suppress(ConnectionError):  # it died at once: its exit tells
            await proc.stdin.drain()
        if self.stopping.is_set():  # the signal came while it was being started
            _send(proc, signal.SIGTERM)
        return proc

    async def _watchdog(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_WATCH_INTERVAL):
                    await self.stopping.wait()
            if not self.stopping.is_set():
                await asyncio.gather(*(self._check_alive(w) for w in self.workers))

    async def _check_alive(self, worker: _Worker) -> None:
        proc = worker.proc
        if proc is None or not worker.started or not worker.running():
            return
        status, _ = await ask(worker.socket, "/healthz", within=_WATCH_WITHIN)
        if status == 200 or proc is not worker.proc:
            worker.missed = 0
            return
        worker.missed += 1
        if worker.missed >= _WATCH_MISSES and not self.stopping.is_set():
            log.error(
                "worker_unresponsive", worker=worker.index, pid=proc.pid, missed=worker.missed
            )
            _send(proc, signal.SIGKILL)

    # -- stopping ---------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.stopping.is_set():
            log.warning("second_signal_closing_now", signal=name)
        else:
            log.info("shutdown_requested", signal=name)
        self._stop(signum)

    def _stop(self, signum: int) -> None:
        self.stopping.set()
        for worker in self.workers:
            if worker.proc is not None and worker.running():
                _send(worker.proc, signum)

    async def _wait_for_exits(self, tasks: list[asyncio.Task[None]]) -> None:
        grace = self.config.shutdown_grace + _STOP_MARGIN
        _, late = await asyncio.wait(tasks, timeout=grace)
        if not late:
            return
        for worker in self.workers:
            if worker.proc is not None and worker.running():
                log.error("worker_stop_timeout", worker=worker.index, seconds=grace)
                _send(worker.proc, signal.SIGKILL)
        await asyncio.wait(late, timeout=_KILL_WAIT)

    # -- readiness --------------------------------------------------------------

    async def _readiness(self) -> Reply:
        problems = await asyncio.gather(*(self._not_ready(w) for w in self.workers))
        reasons = [problem for problem in problems if problem]
        if not reasons:
            return READY
        return replies.problem(503, "worker_not_ready", "; ".join(reasons))

    async def _not_ready(self, worker: _Worker) -> str:
        if not worker.running():
            return f"worker {worker.index}: not running"
        if not worker.started:
            return f"worker {worker.index}: starting"
        status, error = await ask(worker.socket, "/readyz")
        return "" if status == 200 else f"worker {worker.index}: {error or 'no answer'}"


def _send(proc: asyncio.subprocess.Process, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signum)


def _exit(code: int | None) -> str:
    if code is None:
        return "not started"
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def _reserve(where: Listen) -> list[socket.socket]:
    """The public port bound with SO_REUSEPORT, not listening: the workers bind
    it beside these sockets (the kernel spreads connections over the listening
    ones only)."""
    infos = socket.getaddrinfo(
        where.host or None, where.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    port = where.port
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:  # as asyncio's create_server does
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            port = int(sock.getsockname()[1])  # port 0: the one the first bind got
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets
