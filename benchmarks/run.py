"""Measure the same load against several systems on this machine, in one run.

    python -m benchmarks.run [--smoke] [--duration SECONDS] [--out DIR] [--systems bare,gateway]

Starts Redis and then each system as child processes, one system at a time on a fresh
empty store, drives each with wrk (a 1 s warm-up, then every scenario), and writes
<out>/<timestamp>.json and .md; a full (non-smoke) run also replaces benchmarks/RESULTS.md.
Exits 1 when a system failed to start or produced no successful requests (runs with
some errors are only flagged), 2 when the harness itself could not run (wrk or
redis-server missing, Redis did not start), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import redis

from benchmarks import report
from benchmarks.children import Child, ChildFailed, Children, free_ports, wait_for
from benchmarks.machine import CpuWatch, Pinning, machine_facts, this_machine_pinning
from benchmarks.report import Scenario, ScenarioOutcome, SystemOutcome
from benchmarks.systems import REPO, Launch, System, SystemSetupError, http_ok, resolve, select
from benchmarks.wrkout import WrkParseError, parse_wrk_output

HERE = Path(__file__).resolve().parent
WRK_DIR = HERE / "wrk"
OUT_DIR = HERE / "out"
RESULTS = HERE / "RESULTS.md"

DEFAULT_DURATION_S = 10
SMOKE_DURATION_S = 1
WARMUP_S = 1
READY_TIMEOUT_S = 30.0
# wrk stops itself after -d; one still running this much later is stuck.
WRK_OVERRUN_S = 30.0
REQUIRED_TOOLS = ("wrk", "redis-server")

SCENARIOS = (
    Scenario("throughput", connections=64, threads=None),
    Scenario("latency_c1", connections=1, threads=1),
)


@dataclass(frozen=True, slots=True)
class Bench:
    """What every measurement of one run shares."""

    children: Children
    pinning: Pinning
    scenarios: tuple[Scenario, ...]
    workdir: Path
    store_url: str
    duration_s: int


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        print(f"error: not on PATH: {', '.join(missing)}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    pinning = this_machine_pinning()
    scenarios = tuple(
        dataclasses.replace(s, threads=s.threads or pinning.wrk_threads) for s in SCENARIOS
    )
    print(f"pinning: {pinning.note}", flush=True)
    started = datetime.now(UTC)
    try:
        outcomes = measure_all(args.systems, pinning, scenarios, args.duration)
    except ChildFailed as exc:
        print(f"error: the harness could not start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; every child process was stopped", file=sys.stderr)
        return 130
    doc = report.document(
        run=_run_facts(argv, args, started),
        machine=machine_facts(pinning),
        scenarios=scenarios,
        outcomes=outcomes,
    )
    publish(doc, args.out or _default_out(args.smoke), results=not args.smoke)
    return verdict(outcomes)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--smoke", action="store_true", help="1 s per scenario, output to a temp dir"
    )
    parser.add_argument(
        "--duration", type=int, help=f"seconds per scenario (default {DEFAULT_DURATION_S})"
    )
    parser.add_argument(
        "--out", type=Path, help=f"output directory (default {OUT_DIR.relative_to(REPO)})"
    )
    parser.add_argument("--systems", help="comma-separated names (default: all)")
    args = parser.parse_args(argv)
    try:
        args.systems = select(args.systems)
    except ValueError as exc:
        parser.error(str(exc))
    if args.duration is None:
        args.duration = SMOKE_DURATION_S if args.smoke else DEFAULT_DURATION_S
    if args.duration < 1:
        parser.error("--duration must be at least 1 (wrk counts whole seconds)")
    return args


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    # Unwind the way Ctrl-C does, so `Children` stops every child on the way out.
    raise KeyboardInterrupt


def measure_all(
    systems: Sequence[System], pinning: Pinning, scenarios: tuple[Scenario, ...], duration_s: int
) -> list[SystemOutcome]:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, Children(Path(tmp)) as children:
        workdir = Path(tmp)
        store_url = start_redis(children, pinning, workdir)
        bench = Bench(children, pinning, scenarios, workdir, store_url, duration_s)
        return [measure(bench, system) for system in systems]


def start_redis(children: Children, pinning: Pinning, workdir: Path) -> str:
    """Redis as the gateway requires it in production: AOF, and never evict a key."""
    (port,) = free_ports(1)
    data = workdir / "redis"
    data.mkdir()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(data)]
    argv += ["--maxmemory-policy", "noeviction"]
    child = children.start("redis", pinning.load(argv))
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for(lambda: redis_answers(url), child, READY_TIMEOUT_S, "answering PING")
    except ChildFailed as exc:
        raise ChildFailed(f"{exc}\n{child.log_tail()}") from None
    print(f"redis: {url}", flush=True)
    return url


def redis_answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def store_keys(url: str) -> int | None:
    try:
        with redis.Redis.from_url(url, socket_timeout=5.0) as client:
            return int(client.dbsize())
    except redis.RedisError:
        return None


def measure(bench: Bench, system: System) -> SystemOutcome:
    outcome = SystemOutcome(system.name, system.description)
    print(f"\n== {system.name}: {system.description}", flush=True)
    try:
        # An empty store for each system: one system's backlog must not slow the next.
        with redis.Redis.from_url(bench.store_url) as client:
            client.flushall()
        launch, child = start_system(bench, system)
    except (SystemSetupError, ChildFailed, redis.RedisError) as exc:
        outcome.error = str(exc)
        print(f"!! {system.name} FAILED TO START: {exc}", flush=True)
        return outcome
    outcome.argv = list(launch.argv)
    try:
        outcome.scenarios = run_scenarios(bench, system.name, child, launch.target_url)
        outcome.store_keys = store_keys(bench.store_url)
        if child.returncode is not None:
            outcome.error = (
                f"exited with code {child.returncode} during the run\n{child.log_tail()}"
            )
            print(f"!! {system.name} {outcome.error}", flush=True)
    finally:
        bench.children.stop(child)
    return outcome


def start_system(bench: Bench, system: System) -> tuple[Launch, Child]:
    workdir = bench.workdir / system.name
    workdir.mkdir()
    port, admin_port = free_ports(2)
    values = {"python": sys.executable, "repo": str(REPO), "workdir": str(workdir)}
    values |= {"port": str(port), "admin_port": str(admin_port), "store_url": bench.store_url}
    launch = resolve(system, values, workdir)
    argv = bench.pinning.server(launch.argv)
    child = bench.children.start(system.name, argv, env=launch.env, cwd=REPO)
    try:
        ready = f"ready ({launch.ready_url} answering 200)"
        wait_for(lambda: http_ok(launch.ready_url), child, READY_TIMEOUT_S, ready)
    except ChildFailed as exc:
        bench.children.stop(child)
        raise ChildFailed(f"{exc}\n--- its last output:\n{child.log_tail()}") from None
    print(f"   started: {shlex.join(argv)}", flush=True)
    return launch, child


def run_scenarios(bench: Bench, system: str, server: Child, url: str) -> list[ScenarioOutcome]:
    warmup = run_wrk(bench, f"{system}-warmup", bench.scenarios[0], url, WARMUP_S)
    print(f"   warm-up: {_summary(warmup)}", flush=True)
    outcomes = []
    for scenario in bench.scenarios:
        cpu = CpuWatch(server.cpu_seconds, bench.pinning)
        outcome = run_wrk(bench, f"{system}-{scenario.name}", scenario, url, bench.duration_s)
        outcome.server_cpu, outcome.load_cpu = cpu.server_share(), cpu.load_share()
        print(f"   {scenario.name}: {_summary(outcome)}", flush=True)
        outcomes.append(outcome)
    return outcomes


def run_wrk(
    bench: Bench, label: str, scenario: Scenario, url: str, duration_s: int
) -> ScenarioOutcome:
    argv = ["wrk", f"-t{scenario.threads}", f"-c{scenario.connections}", f"-d{duration_s}s"]
    argv += ["--latency", "-s", str(WRK_DIR / scenario.script), url]
    argv = bench.pinning.load(argv)
    outcome = ScenarioOutcome(scenario.name, argv, output="")
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


def _summary(outcome: ScenarioOutcome) -> str:
    result = outcome.result
    if result is None:
        return f"FAILED: {outcome.error}"
    line = f"{result.rps:,.0f} req/s, p99 {result.p99_us:,.0f} µs"
    if outcome.server_cpu is not None or outcome.load_cpu is not None:
        line += f", CPU server/load {_percent(outcome.server_cpu)}/{_percent(outcome.load_cpu)}"
    flags = outcome.flags()
    return line + (f"  ⚠ {'; '.join(flags)}" if flags else "")


def _percent(share: float | None) -> str:
    return "—" if share is None else f"{share:.0%}"


def _run_facts(argv: list[str], args: argparse.Namespace, started: datetime) -> dict[str, Any]:
    return {
        "command": shlex.join(["python", "-m", "benchmarks.run", *argv]),
        "started": started.isoformat(timespec="seconds"),
        "stamp": started.strftime("%Y%m%dT%H%M%SZ"),
        "smoke": args.smoke,
        "duration_s": args.duration,
        "warmup_s": WARMUP_S,
        "systems": [system.name for system in args.systems],
    }


def _default_out(smoke: bool) -> Path:
    # Smoke runs (CI) must not litter the checkout with throwaway numbers.
    return Path(tempfile.mkdtemp(prefix="bench-smoke-")) if smoke else OUT_DIR


def publish(doc: dict[str, Any], out_dir: Path, *, results: bool) -> None:
    text = report.markdown(doc)
    print("\n" + text, flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = doc["run"]["stamp"]
    written = [out_dir / f"{stamp}.json", out_dir / f"{stamp}.md"]
    written[0].write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    written[1].write_text(text)
    if results:
        RESULTS.write_text(
            "# Benchmark results\n\nThe latest full run, written by `benchmarks/run.py`;"
            " rerun the command below to refresh it.\n\n" + text
        )
        written.append(RESULTS)
    for path in written:
        print(f"wrote {path}", flush=True)


def verdict(outcomes: Sequence[SystemOutcome]) -> int:
    failed = [o.name for o in outcomes if not o.usable]
    flagged = [o.name for o in outcomes if any(s.flags() for s in o.scenarios)]
    if flagged:
        print(f"WARNING: runs with errors (not comparable): {', '.join(flagged)}", file=sys.stderr)
    if failed:
        print(f"FAILED: no usable measurement from {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
