"""Measure the same load against several systems on this machine, in one run.

    python -m benchmarks.run [--smoke] [--duration SECONDS] [--out DIR] [--systems bare,gateway]
                             [--scenarios ingest,drain,e2e] [--events N]

Starts Redis, then runs the scenario groups, each system as child processes on a
fresh empty store:
- ingest: each of --systems in turn, driven by wrk (a 1 s warm-up, then every scenario);
- drain and e2e (benchmarks/delivery.py): the delivery half, always the bare client
  against the gateway with its forwarder on, delivering to a counting sink.
By default all groups run (drain and e2e only when the gateway is among --systems).
Writes <out>/<timestamp>.json and .md; a full (non-smoke) run also replaces
benchmarks/RESULTS.md. Exits 1 when a system failed to start or produced no
successful requests (runs with some errors are only flagged), 2 when the harness
itself could not run (wrk or redis-server missing, Redis did not start), 130 when
interrupted.
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
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import redis

from benchmarks import delivery, report
from benchmarks.bench import Bench, flush_store, run_wrk, start_redis, start_system, store_keys
from benchmarks.children import Child, ChildFailed, Children
from benchmarks.delivery import DeliveryPlan
from benchmarks.machine import CpuWatch, Pinning, machine_facts, this_machine_pinning
from benchmarks.report import DeliveryOutcome, Scenario, ScenarioOutcome, SystemOutcome
from benchmarks.systems import REPO, System, SystemSetupError, select

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "out"
RESULTS = HERE / "RESULTS.md"

DEFAULT_DURATION_S = 10
SMOKE_DURATION_S = 1
WARMUP_S = 1
GROUPS = ("ingest", *delivery.SCENARIOS)

SCENARIOS = (
    Scenario("throughput", connections=64, threads=None),
    Scenario("latency_c1", connections=1, threads=1),
)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
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
    started = datetime.now(UTC)
    systems = args.systems if "ingest" in args.scenarios else ()
    plan = _delivery_plan(args)
    try:
        outcomes, delivered = measure_all(systems, pinning, scenarios, args.duration, plan)
    except ChildFailed as exc:
        print(f"error: the harness could not start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; every child process was stopped", file=sys.stderr)
        return 130
    doc = report.document(
        run=_run_facts(argv, args, started),
        machine=machine_facts(pinning),
        scenarios=scenarios if systems else (),
        outcomes=outcomes,
        delivery=delivered,
        delivery_settings=_delivery_settings(plan, pinning),
    )
    publish(doc, args.out or _default_out(args.smoke), results=not args.smoke)
    return verdict(outcomes, delivered)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"1 s per scenario, {delivery.SMOKE_EVENTS:,} delivery events, output to a temp dir",
    )
    parser.add_argument(
        "--duration", type=int, help=f"seconds per scenario (default {DEFAULT_DURATION_S})"
    )
    parser.add_argument(
        "--out", type=Path, help=f"output directory (default {OUT_DIR.relative_to(REPO)})"
    )
    parser.add_argument("--systems", help="comma-separated names for ingest (default: all)")
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
    if args.events is None:
        args.events = delivery.SMOKE_EVENTS if args.smoke else delivery.DEFAULT_EVENTS
    if args.events < 1:
        parser.error("--events must be at least 1")
    return args


def required_tools(groups: Sequence[str]) -> list[str]:
    """redis-server always; wrk for the groups that drive the gateway with it."""
    needs_wrk = "ingest" in groups or "e2e" in groups
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


def _delivery_settings(plan: DeliveryPlan | None, pinning: Pinning) -> dict[str, Any]:
    if plan is None:
        return {}
    return {
        "events": plan.events,
        "connections": plan.connections,
        "duration_s": plan.duration_s,
        "wrk_threads": pinning.wrk_threads,
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
) -> tuple[list[SystemOutcome], list[DeliveryOutcome]]:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, Children(Path(tmp)) as children:
        workdir = Path(tmp)
        store_url = start_redis(children, pinning, workdir)
        bench = Bench(children, pinning, scenarios, workdir, store_url, duration_s)
        outcomes = [measure(bench, system) for system in systems]
        delivered = delivery.measure_delivery(bench, plan) if plan else []
        return outcomes, delivered


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
        "systems": [system.name for system in args.systems] if "ingest" in args.scenarios else [],
        "scenarios": list(args.scenarios),
        "events": args.events,
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


def verdict(outcomes: Sequence[SystemOutcome], delivered: Sequence[DeliveryOutcome] = ()) -> int:
    failed = [o.name for o in outcomes if not o.usable]
    flagged = [o.name for o in outcomes if any(s.flags() for s in o.scenarios)]
    failed += [f"{d.system} {d.scenario}" for d in delivered if not d.usable]
    flagged += [f"{d.system} {d.scenario}" for d in delivered if d.usable and d.flags()]
    if flagged:
        print(f"WARNING: runs with errors (not comparable): {', '.join(flagged)}", file=sys.stderr)
    if failed:
        print(f"FAILED: no usable measurement from {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
