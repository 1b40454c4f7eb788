"""Measure the same load against several systems on this machine, in one run.

    python -m benchmarks.run [--smoke] [--duration SECONDS] [--out DIR] [--systems bare,gateway]
                             [--scenarios ingest,drain,e2e,workers,footprint] [--events N]
                             [--retries N] [--pairs N] [--footprint-events N]

Starts Redis, then runs the scenario groups, each system as child processes, the
server under test pinned to one CPU and the load (wrk, Redis, the sink) to the others:
- ingest: each of --systems in turn (bare, bare_admit, bare_call, gateway, fastapi,
  aiohttp: benchmarks/systems.py), driven by wrk with the identical load: a 1 s
  warm-up (none in a smoke run), then every scenario of SCENARIOS on an emptied Redis;
  latency_half is paced at half the req/s the same system reached in throughput;
- drain and e2e (benchmarks/delivery.py): the delivery half, always the bare client
  against the gateway with its forwarder on, delivering to a counting sink;
- workers (benchmarks/workers.py): the ingest gateway with 1 and with 2 workers,
  --pairs interleaved pairs of the throughput load, nothing pinned;
- footprint (benchmarks/footprint.py): exec -> /readyz over several starts, and the
  gateway's RSS over --footprint-events events (1M; a smoke run 20k).
By default all groups run (all but ingest only when the gateway is among --systems).
Writes <out>/<timestamp>.json, .md and .png (the chart: req/s and p50/p99 per system,
with matplotlib); a full run (not smoke, every system and scenario) also replaces
benchmarks/RESULTS.md and benchmarks/RESULTS.png. Exits 1 when a system failed to
start or produced no successful requests (runs with some errors are only flagged),
2 when the harness itself could not run (wrk or redis-server missing, Redis did not
start), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import redis

from benchmarks import chart, delivery, footprint, report, workers
from benchmarks.bench import Bench, flush_store, run_wrk, start_redis, start_system, store_keys
from benchmarks.children import Child, ChildFailed, Children
from benchmarks.delivery import DeliveryPlan
from benchmarks.footprint import FootprintPlan
from benchmarks.machine import (
    CpuWatch,
    Pinning,
    busy_share,
    machine_facts,
    this_machine_pinning,
)
from benchmarks.report import (
    LATENCY_C1,
    LATENCY_HALF,
    THROUGHPUT,
    DeliveryOutcome,
    Scenario,
    ScenarioOutcome,
    SystemOutcome,
)
from benchmarks.systems import REPO, System, SystemSetupError, select

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "out"
RESULTS = HERE / "RESULTS.md"
RESULTS_CHART = HERE / "RESULTS.png"
PROFILE = HERE / "PROFILE.md"

DEFAULT_DURATION_S = 10
SMOKE_DURATION_S = 1
WARMUP_S = 1
DEFAULT_RETRIES = 2
GROUPS = ("ingest", *delivery.SCENARIOS, workers.GROUP, footprint.GROUP)
GroupMeasure = Callable[[Bench], dict[str, Any]]  # a group measured on the run's Bench
IDLE_CHECK_S = 1.0  # how long the machine is watched before the run
BUSY_WARNING = 0.1  # above this share of the CPUs busy before the run: a warning

KIB = 1024
# In this order: latency_half is paced from what throughput reached.
SCENARIOS = (
    Scenario(THROUGHPUT, 64, None, payload=KIB, about="the maximum rate, fresh keys, 1 KiB bodies"),
    Scenario(
        "duplicates",
        64,
        None,
        script="post_repeat_key.lua",
        payload=KIB,
        about="each key sent 5 times in a row (1 accepted, 4 duplicates), 1 KiB",
    ),
    Scenario(LATENCY_C1, 1, 1, payload=KIB, about="one connection: one request at a time"),
    Scenario(
        LATENCY_HALF,
        64,
        None,
        payload=KIB,
        rate_of=THROUGHPUT,
        rate_share=0.5,
        about="paced at half the req/s this system reached in throughput (see the wrk"
        " script's WRK_RATE), same 64 connections",
    ),
    # Last: its gigabytes of AOF are still being written back to disk for a while.
    Scenario("payload_64k", 64, None, payload=64 * KIB, about="fresh keys, 64 KiB bodies"),
)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.republish is not None:
        # RESULTS.md again from a recorded full run, e.g. after benchmarks/PROFILE.md changed.
        publish(json.loads(args.republish.read_text()), args.republish.parent, results=True)
        return 0
    missing = [tool for tool in required_tools(args.scenarios) if shutil.which(tool) is None]
    if missing:
        print(f"error: not on PATH: {', '.join(missing)}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    pinning = this_machine_pinning()
    scenarios = tuple(
        dataclasses.replace(s, threads=s.threads or pinning.wrk_threads) for s in SCENARIOS
    )
    print(f"pinning: {pinning.note}", flush=True)
    busy = busy_share(os.sched_getaffinity(0), IDLE_CHECK_S)
    if busy is not None and busy > BUSY_WARNING:
        print(
            f"WARNING: the CPUs were {busy:.0%} busy before the run (other processes):"
            " every number will be low and noisy",
            file=sys.stderr,
            flush=True,
        )
    started = datetime.now(UTC)
    systems = args.systems if "ingest" in args.scenarios else ()
    plan = _delivery_plan(args)
    warmup_s = 0 if args.smoke else WARMUP_S
    measures = _group_measures(args)
    try:
        outcomes, delivered, groups = measure_all(
            systems, pinning, scenarios, args.duration, plan, warmup_s, args.retries, measures
        )
    except ChildFailed as exc:
        print(f"error: the harness could not start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; every child process was stopped", file=sys.stderr)
        return 130
    doc = report.document(
        run=_run_facts(argv, args, started, warmup_s),
        machine=machine_facts(pinning, busy),
        scenarios=scenarios if systems else (),
        outcomes=outcomes,
        delivery=delivered,
        delivery_settings=_delivery_settings(plan, pinning),
        **groups,
    )
    # Only a complete run replaces RESULTS.md: a partial one (--systems, --scenarios)
    # would publish targets whose other half was never measured.
    every = len(args.systems) == len(select(None)) and args.scenarios == GROUPS
    complete = every and not args.smoke
    publish(doc, args.out or _default_out(args.smoke), results=complete)
    return verdict(outcomes, delivered, groups)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"1 s per scenario, no warm-up, {delivery.SMOKE_EVENTS:,} delivery events,"
        " output to a temp dir",
    )
    parser.add_argument(
        "--duration", type=int, help=f"seconds per scenario (default {DEFAULT_DURATION_S})"
    )
    parser.add_argument(
        "--out", type=Path, help=f"output directory (default {OUT_DIR.relative_to(REPO)})"
    )
    parser.add_argument("--systems", help="comma-separated names for ingest (default: all)")
    parser.add_argument(
        "--retries",
        type=int,
        help="measure an ingest scenario again, up to this many times, while processes"
        f" outside the run use over {report.OTHER_CPU_LIMIT:.0%} of a core during it"
        f" (default {DEFAULT_RETRIES}, smoke 0)",
    )
    parser.add_argument(
        "--scenarios",
        help=f"comma-separated groups of {', '.join(GROUPS)} (default: all;"
        " drain and e2e only when the gateway is among --systems)",
    )
    parser.add_argument(
        "--events",
        type=int,
        help=f"events per delivery drain (default {delivery.DEFAULT_EVENTS:,},"
        f" smoke {delivery.SMOKE_EVENTS:,})",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        help=f"workers: interleaved runs of 1 and 2 workers (default {workers.DEFAULT_PAIRS},"
        f" smoke {workers.SMOKE_PAIRS})",
    )
    parser.add_argument(
        "--footprint-events",
        type=int,
        help=f"footprint: events admitted for the RSS rounds (default"
        f" {footprint.DEFAULT_EVENTS:,}, smoke {footprint.SMOKE_EVENTS:,})",
    )
    parser.add_argument(
        "--republish",
        type=Path,
        metavar="JSON",
        help="measure nothing: rewrite RESULTS.md/.png from a full run's JSON (and PROFILE.md)",
    )
    args = parser.parse_args(argv)
    try:
        args.systems = select(args.systems)
        args.scenarios = _groups(args.scenarios, args.systems)
    except ValueError as exc:
        parser.error(str(exc))
    if args.duration is None:
        args.duration = SMOKE_DURATION_S if args.smoke else DEFAULT_DURATION_S
    if args.duration < 1:
        parser.error("--duration must be at least 1 (wrk counts whole seconds)")
    if args.retries is None:
        args.retries = 0 if args.smoke else DEFAULT_RETRIES
    if args.retries < 0:
        parser.error("--retries must be at least 0")
    if args.events is None:
        args.events = delivery.SMOKE_EVENTS if args.smoke else delivery.DEFAULT_EVENTS
    if args.events < 1:
        parser.error("--events must be at least 1")
    if args.pairs is None:
        args.pairs = workers.SMOKE_PAIRS if args.smoke else workers.DEFAULT_PAIRS
    if args.footprint_events is None:
        args.footprint_events = footprint.SMOKE_EVENTS if args.smoke else footprint.DEFAULT_EVENTS
    if args.pairs < 1 or args.footprint_events < 1:
        parser.error("--pairs and --footprint-events must be at least 1")
    return args


def required_tools(groups: Sequence[str]) -> list[str]:
    """redis-server always; wrk for the groups that drive the gateway with it."""
    needs_wrk = any(group in groups for group in ("ingest", "e2e", workers.GROUP, footprint.GROUP))
    return ["wrk", "redis-server"] if needs_wrk else ["redis-server"]


def _groups(names: str | None, systems: Sequence[System]) -> tuple[str, ...]:
    if names is None:
        with_gateway = any(system.name == "gateway" for system in systems)
        return GROUPS if with_gateway else ("ingest",)
    wanted = tuple(name.strip() for name in names.split(",") if name.strip())
    unknown = [name for name in wanted if name not in GROUPS]
    if unknown or not wanted:
        raise ValueError(f"unknown scenario group(s) {unknown}; known: {', '.join(GROUPS)}")
    return wanted


def _delivery_plan(args: argparse.Namespace) -> DeliveryPlan | None:
    chosen = tuple(name for name in delivery.SCENARIOS if name in args.scenarios)
    if not chosen:
        return None
    return DeliveryPlan(chosen, args.events, delivery.CONNECTIONS, args.duration)


def _group_measures(args: argparse.Namespace) -> dict[str, GroupMeasure]:
    plan = FootprintPlan.of_run(args.footprint_events, smoke=args.smoke)
    measures: dict[str, GroupMeasure] = {
        workers.GROUP: lambda bench: workers.measure_workers(bench, args.pairs),
        footprint.GROUP: lambda bench: footprint.measure_in_run(bench, plan),
    }
    return {name: measure for name, measure in measures.items() if name in args.scenarios}


def _delivery_settings(plan: DeliveryPlan | None, pinning: Pinning) -> dict[str, Any]:
    if plan is None:
        return {}
    return {
        "events": plan.events,
        "connections": plan.connections,
        "duration_s": plan.duration_s,
        "wrk_threads": pinning.wrk_threads,
        "e2e_payload": delivery.E2E_PAYLOAD,
        "pinning": delivery.pinning_line(pinning),
    }


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    # Unwind the way Ctrl-C does, so `Children` stops every child on the way out.
    raise KeyboardInterrupt


def measure_all(
    systems: Sequence[System],
    pinning: Pinning,
    scenarios: tuple[Scenario, ...],
    duration_s: int,
    plan: DeliveryPlan | None,
    warmup_s: int = WARMUP_S,
    retries: int = 0,
    measures: Mapping[str, GroupMeasure] | None = None,
) -> tuple[list[SystemOutcome], list[DeliveryOutcome], dict[str, dict[str, Any]]]:
    """Every group in turn; `measures`: the later groups (workers, footprint), whose
    JSON comes back by group name."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, Children(Path(tmp)) as children:
        workdir = Path(tmp)
        store_url = start_redis(children, pinning, workdir)
        print(f"redis: {store_url}", flush=True)
        bench = Bench(
            children, pinning, scenarios, workdir, store_url, duration_s, warmup_s, retries
        )
        outcomes = [measure(bench, system) for system in systems]
        delivered = delivery.measure_delivery(bench, plan) if plan else []
        groups = {name: measure(bench) for name, measure in (measures or {}).items()}
        return outcomes, delivered, groups


def measure(bench: Bench, system: System) -> SystemOutcome:
    outcome = SystemOutcome(system.name, system.description)
    print(f"\n== {system.name}: {system.description}", flush=True)
    try:
        flush_store(bench.store_url)
        launch, child = start_system(bench, system)
    except (SystemSetupError, ChildFailed, redis.RedisError) as exc:
        outcome.error = str(exc)
        print(f"!! {system.name} FAILED TO START: {exc}", flush=True)
        return outcome
    outcome.argv = list(child.argv)  # as run: pinned with taskset where the machine allows
    outcome.ready_s = child.ready_s
    try:
        outcome.scenarios = run_scenarios(bench, system.name, child, launch.target_url)
        if child.returncode is not None:
            outcome.error = (
                f"exited with code {child.returncode} during the run\n{child.log_tail()}"
            )
            print(f"!! {system.name} {outcome.error}", flush=True)
    finally:
        bench.children.stop(child)
    return outcome


def run_scenarios(bench: Bench, system: str, server: Child, url: str) -> list[ScenarioOutcome]:
    if bench.warmup_s:
        warmup = run_wrk(bench, f"{system}-warmup", bench.scenarios[0], url, bench.warmup_s)
        print(f"   warm-up: {_summary(warmup)}", flush=True)
    outcomes: list[ScenarioOutcome] = []
    reached: dict[str, float] = {}  # successful req/s per scenario, for the paced ones
    for scenario in bench.scenarios:
        rate = None
        if scenario.rate_of is not None:
            if not reached.get(scenario.rate_of):
                missing = f"no req/s from {scenario.rate_of} to pace at"
                outcomes.append(ScenarioOutcome(scenario.name, [], "", error=missing))
                print(f"   {scenario.name}: FAILED: {missing}", flush=True)
                continue
            rate = scenario.rate_share * reached[scenario.rate_of]
        outcome = measure_scenario(bench, system, server, url, scenario, rate)
        if outcome.result is not None and outcome.result.duration_s:
            reached[scenario.name] = outcome.result.successes / outcome.result.duration_s
        print(f"   {scenario.name}: {_summary(outcome)}", flush=True)
        outcomes.append(outcome)
    return outcomes


def measure_scenario(
    bench: Bench, system: str, server: Child, url: str, scenario: Scenario, rate: float | None
) -> ScenarioOutcome:
    """One scenario on an emptied store. Measured again (up to `bench.retries` times)
    while processes outside the run took CPU during it; the least disturbed is kept."""
    attempts: list[ScenarioOutcome] = []
    for attempt in range(1 + bench.retries):
        flush_store(bench.store_url)  # one scenario's events must not slow the next
        cpu = CpuWatch(server.cpu_seconds, bench.pinning, bench.children.sessions)
        label = f"{system}-{scenario.name}" + (f"-{attempt + 1}" if attempt else "")
        outcome = run_wrk(bench, label, scenario, url, bench.duration_s, rate)
        outcome.server_cpu, outcome.load_cpu = cpu.server_share(), cpu.load_share()
        outcome.other_cpu = cpu.other_share()
        outcome.store_keys = store_keys(bench.store_url)
        outcome.rss_mb = server.rss_mb()
        attempts.append(outcome)
        if outcome.other_cpu <= report.OTHER_CPU_LIMIT or attempt == bench.retries:
            break
        print(
            f"   {scenario.name}: other processes used {outcome.other_cpu:.0%} of a core;"
            " measuring again",
            flush=True,
        )
    kept = min(attempts, key=lambda o: o.other_cpu if o.other_cpu is not None else 0.0)
    kept.attempts = len(attempts)
    return kept


def _summary(outcome: ScenarioOutcome) -> str:
    result = outcome.result
    if result is None:
        return f"FAILED: {outcome.error}"
    line = f"{result.rps:,.0f} req/s, p50 {result.p50_us:,.0f} µs, p99 {result.p99_us:,.0f} µs"
    shares = (outcome.server_cpu, outcome.load_cpu, outcome.other_cpu)
    if any(share is not None for share in shares):
        line += f", CPU server/load/other {'/'.join(_percent(share) for share in shares)}"
    flags = outcome.flags()
    return line + (f"  ⚠ {'; '.join(flags)}" if flags else "")


def _percent(share: float | None) -> str:
    return "—" if share is None else f"{share:.0%}"


def _run_facts(
    argv: list[str], args: argparse.Namespace, started: datetime, warmup_s: int
) -> dict[str, Any]:
    return {
        "command": shlex.join(["python", "-m", "benchmarks.run", *argv]),
        "started": started.isoformat(timespec="seconds"),
        "stamp": started.strftime("%Y%m%dT%H%M%SZ"),
        "smoke": args.smoke,
        "duration_s": args.duration,
        "warmup_s": warmup_s,
        "retries": args.retries,
        "systems": [system.name for system in args.systems] if "ingest" in args.scenarios else [],
        "scenarios": list(args.scenarios),
        "events": args.events,
        "pairs": args.pairs,
        "footprint_events": args.footprint_events,
        **code_version(),
    }


def code_version() -> dict[str, Any]:
    """The commit measured, and the measured code's files that differ from it."""

    def git(*argv: str) -> str:
        try:
            done = subprocess.run(
                ["git", *argv], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout

    changed = git("status", "--porcelain", "--", "gateway", "config", "pyproject.toml")
    return {
        "commit": git("rev-parse", "--short", "HEAD").strip() or None,
        "uncommitted": [line[3:] for line in changed.splitlines()],
    }


def _default_out(smoke: bool) -> Path:
    # Smoke runs (CI) must not litter the checkout with throwaway numbers.
    return Path(tempfile.mkdtemp(prefix="bench-smoke-")) if smoke else OUT_DIR


def publish(doc: dict[str, Any], out_dir: Path, *, results: bool) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = doc["run"]["stamp"]
    png = out_dir / f"{stamp}.png"
    try:
        chart.render(doc, png)
        doc["chart"] = png.name
    except ImportError as exc:  # matplotlib is in the bench (and test) extra
        doc["chart"] = None
        print(f"no chart: {exc} (pip install -e '.[bench]')", file=sys.stderr, flush=True)
    text = report.markdown(doc, chart=doc["chart"])
    print("\n" + text, flush=True)
    written = [out_dir / f"{stamp}.json", out_dir / f"{stamp}.md"]
    written[0].write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    written[1].write_text(text)
    if doc["chart"]:
        written.append(png)
    if results:
        chart_name = None
        if doc["chart"]:
            shutil.copyfile(png, RESULTS_CHART)
            chart_name = RESULTS_CHART.name
            written.append(RESULTS_CHART)
        RESULTS.write_text(
            "# Benchmark results\n\nThe latest full run, written by `benchmarks/run.py`;"
            " rerun the command below to refresh it.\n\n"
            + report.markdown(doc, chart=chart_name)
            + _profile_section()
        )
        written.append(RESULTS)
    for path in written:
        print(f"wrote {path}", flush=True)


def _profile_section() -> str:
    """benchmarks/PROFILE.md (the latest `python -m benchmarks.profile` and what was
    changed because of it), carried into every RESULTS.md."""
    if not PROFILE.is_file():
        return ""
    return "\n" + PROFILE.read_text()


def verdict(
    outcomes: Sequence[SystemOutcome],
    delivered: Sequence[DeliveryOutcome] = (),
    groups: dict[str, dict[str, Any]] | None = None,
) -> int:
    failed = [o.name for o in outcomes if not o.usable]
    flagged = [o.name for o in outcomes if any(s.flags() for s in o.scenarios)]
    failed += [f"{d.system} {d.scenario}" for d in delivered if not d.usable]
    flagged += [f"{d.system} {d.scenario}" for d in delivered if d.usable and d.flags()]
    failed += [name for name, group in (groups or {}).items() if not group["usable"]]
    flagged += [name for name, g in (groups or {}).items() if g["usable"] and g["flags"]]
    if flagged:
        print(f"WARNING: runs with errors (not comparable): {', '.join(flagged)}", file=sys.stderr)
    if failed:
        print(f"FAILED: no usable measurement from {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
