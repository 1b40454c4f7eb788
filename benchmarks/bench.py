"""What every measurement of a run shares: Redis, starting a system, driving wrk."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import redis

from benchmarks.children import (
    POLL_INTERVAL_S,
    Child,
    ChildFailed,
    Children,
    free_ports,
    wait_for,
    wait_until,
)
from benchmarks.machine import Pinning, plan_pinning
from benchmarks.outcomes import Scenario, ScenarioOutcome
from benchmarks.systems import REPO, Launch, System, http_ok, resolve
from benchmarks.wrkout import WrkParseError, parse_wrk_output

WRK_DIR = Path(__file__).resolve().parent / "wrk"
READY_TIMEOUT_S = 30.0
# wrk stops itself after -d; one still running this much later is stuck.
WRK_OVERRUN_S = 30.0


@dataclass(frozen=True, slots=True)
class Bench:
    """What every measurement of one run shares."""

    children: Children
    pinning: Pinning
    scenarios: tuple[Scenario, ...]
    workdir: Path
    store_url: str
    duration_s: int
    warmup_s: int = 1  # per system, before its first scenario; 0: none
    retries: int = 0  # extra attempts at a scenario disturbed by other processes


def start_redis(children: Children, pinning: Pinning, workdir: Path) -> str:
    """Redis as the gateway requires it in production: AOF, and never evict a key."""
    return redis_server(children, pinning, workdir, "redis")[0]


@contextlib.contextmanager
def redis_beside(pin_self: bool) -> Iterator[tuple[str, list[int] | None]]:
    """For the stand-alone tools: a Redis as start_redis starts it, on the second CPU
    (this process moved to the first when `pin_self`), stopped on exit. Its URL, and
    [this process' CPU, Redis' CPU] when pinned. Exits 2 without redis-server."""
    if shutil.which("redis-server") is None:
        print("redis-server is not installed", file=sys.stderr)
        raise SystemExit(2)
    cpus = sorted(os.sched_getaffinity(0))
    pinning = plan_pinning(cpus[:2], shutil.which("taskset") is not None)
    if pin_self and pinning.pinned:
        os.sched_setaffinity(0, set(pinning.server_cpus))
    with tempfile.TemporaryDirectory() as workdir, Children(Path(workdir)) as children:
        yield start_redis(children, pinning, Path(workdir)), cpus[:2] if pinning.pinned else None


def redis_server(
    children: Children, pinning: Pinning, workdir: Path, name: str
) -> tuple[str, Child]:
    """A Redis as start_redis starts it, named `name` (its log and its data directory
    in `workdir`): its URL, and the child, for a measurement that stops its own."""
    (port,) = free_ports(1)
    data = workdir / name
    data.mkdir()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(data)]
    argv += ["--maxmemory-policy", "noeviction"]
    child = children.start(name, pinning.load(argv))
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for(lambda: redis_answers(url), child, READY_TIMEOUT_S, "answering PING")
    except ChildFailed as exc:
        raise ChildFailed(f"{exc}\n{child.log_tail()}") from None
    return url, child


def redis_answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def flush_store(url: str) -> None:
    """An empty store: one measurement's backlog must not slow the next."""
    with redis.Redis.from_url(url) as client:
        client.flushall()


def store_keys(url: str) -> int | None:
    try:
        with redis.Redis.from_url(url, socket_timeout=5.0) as client:
            return int(client.dbsize())
    except redis.RedisError:
        return None


def prepare_system(
    bench: Bench, system: System, label: str, extra: Mapping[str, str] | None = None
) -> Launch:
    """Fill the system's templates (fresh ports, a private workdir named `label`)."""
    workdir = bench.workdir / label
    workdir.mkdir()
    port, admin_port = free_ports(2)
    values = {"python": sys.executable, "repo": str(REPO), "workdir": str(workdir)}
    values |= {"port": str(port), "admin_port": str(admin_port), "store_url": bench.store_url}
    return resolve(system, {**values, **(extra or {})}, workdir)


def start_launch(bench: Bench, launch: Launch, label: str, *, on_load_cpus: bool = False) -> Child:
    """Start a prepared system on the server CPUs (or the load CPUs: a sink is load,
    not the system under test); return once its ready URL answers 200."""
    pin = bench.pinning.load if on_load_cpus else bench.pinning.server
    argv = pin(launch.argv)
    started = time.monotonic()
    child = bench.children.start(label, argv, env=launch.env, cwd=launch.cwd)
    child.ready_s = wait_ready(bench.children, child, launch.ready_url) - started
    print(f"   started: {shlex.join(argv)}", flush=True)
    return child


def wait_ready(
    children: Children, child: Child, ready_url: str, poll_s: float = POLL_INTERVAL_S
) -> float:
    """Wait until `ready_url` answers 200 and return the time.monotonic() it was seen to.
    A child that exits first or is not ready within READY_TIMEOUT_S is stopped, and the
    error carries its last output."""
    ready = f"ready ({ready_url} answering 200)"
    try:
        return wait_until(
            lambda: http_ok(ready_url), [child], READY_TIMEOUT_S, ready, poll_s=poll_s
        )
    except ChildFailed as exc:
        children.stop(child)
        raise ChildFailed(f"{exc}\n--- its last output:\n{child.log_tail()}") from None


def start_system(bench: Bench, system: System) -> tuple[Launch, Child]:
    launch = prepare_system(bench, system, system.name)
    return launch, start_launch(bench, launch, system.name)


def run_wrk(
    bench: Bench,
    label: str,
    scenario: Scenario,
    url: str,
    duration_s: int,
    rate: float | None = None,
) -> ScenarioOutcome:
    """wrk on the load CPUs; its script's settings go through `env` in the argv itself,
    so the argv recorded in the report is the whole command."""
    env = [f"{name}={value}" for name, value in scenario.wrk_env(rate).items()]
    argv = ["env", *env] if env else []
    argv += ["wrk", f"-t{scenario.threads}", f"-c{scenario.connections}", f"-d{duration_s}s"]
    argv += ["--latency", "-s", str(WRK_DIR / scenario.script), url]
    argv = bench.pinning.load(argv)
    outcome = ScenarioOutcome(scenario.name, argv, output="", target_rps=rate)
    try:
        child = bench.children.start(f"wrk-{label}", argv)
    except ChildFailed as exc:
        outcome.error = str(exc)
        return outcome
    try:
        code = bench.children.wait(child, duration_s + WRK_OVERRUN_S)
    except ChildFailed as exc:
        code, outcome.error = None, str(exc)
    outcome.output = child.output()
    if code is not None and code != 0:
        outcome.error = f"wrk exited with code {code}: {child.log_tail(1)}"
    if outcome.error is None:
        try:
            outcome.result = parse_wrk_output(outcome.output)
        except WrkParseError as exc:
            outcome.error = f"unparsable wrk output: {exc}"
    return outcome
