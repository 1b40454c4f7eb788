"""Measure the same load against several systems on this machine, in one run.

    python -m benchmarks.run [--build compiled|interpreted] [--smoke] [--duration SECONDS]
                             [--out DIR] [--systems bare,gateway]
                             [--scenarios ingest,drain,e2e,pairs,workers,footprint]
                             [--events N] [--retries N] [--rounds N] [--pairs N]
                             [--footprint-events N]

Starts Redis, then runs the scenario groups, each system as child processes, the
server under test pinned to one CPU and the load (wrk, Redis, the sink) to the others:
- ingest (benchmarks/ingest.py): each of --systems in turn (bare, bare_admit,
  bare_call, gateway, fastapi, aiohttp: benchmarks/systems.py), driven by wrk with the
  identical load: a 1 s warm-up (none in a smoke run), then every scenario of SCENARIOS
  on an emptied Redis; latency_half is paced at half the req/s the same system reached
  in throughput;
- drain and e2e (benchmarks/delivery.py): the delivery half, always the bare client
  against the gateway with its forwarder on, delivering to a counting sink; the bare
  client and the drain in --rounds interleaved rounds, the order reversed every other
  round, e2e once after them;
- pairs (benchmarks/pairs.py): the gateway, bare_admit, bare and FastAPI in --rounds interleaved
  rounds of the throughput load, each a fresh start pinned as in ingest, the order
  reversed every other round: the three ingest ratio targets, free of the machine's drift
  between one system's ingest and the next;
- workers (benchmarks/workers.py): the ingest gateway with 1 and with 2 workers,
  --pairs interleaved pairs of the throughput load, nothing pinned;
- footprint (benchmarks/footprint.py): exec -> /readyz over several starts, and the
  gateway's RSS over --footprint-events events (1M; a smoke run 20k).
By default all groups run (all but ingest only when the gateway is among --systems).
The gateway measured is the compiled build, as the container image ships it (--build
compiled, the default: `./dev.sh compiled-copy` into a temp dir, about 75 s, needing gcc
and the Python headers; the gateway's processes run from there), or the checkout
interpreted (--build interpreted). The baselines always run from the checkout.
Writes <out>/<timestamp>.json (benchmarks/document.py), .md (report.py) and .png (the
chart: req/s and p50/p99 per system, with matplotlib); a full run (not smoke, every
system and scenario) also replaces benchmarks/RESULTS.md and benchmarks/RESULTS.png
(benchmarks/publish.py). Exits 1 when a system failed to start or produced no
successful requests (runs with some errors are only flagged), 2 when the harness itself
could not run (wrk or redis-server missing, Redis did not start), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from benchmarks import delivery, footprint, ingest, pairs, workers
from benchmarks.bench import Bench, start_redis
from benchmarks.children import ChildFailed, Children
from benchmarks.delivery import DeliveryPlan
from benchmarks.document import document
from benchmarks.footprint import FootprintPlan
from benchmarks.ingest import SCENARIOS
from benchmarks.machine import (
    Pinning,
    busy_share,
    machine_facts,
    steal_since,
    steal_ticks,
    this_machine_pinning,
)
from benchmarks.outcomes import OTHER_CPU_LIMIT, DeliveryOutcome, Scenario, SystemOutcome
from benchmarks.publish import publish, republish
from benchmarks.systems import GATEWAY_ROOT_ENV, REPO, System, select

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "out"

DEFAULT_DURATION_S = 10
SMOKE_DURATION_S = 1
WARMUP_S = 1
DEFAULT_RETRIES = 2
# pairs after the delivery groups, not right after ingest: payload_64k's AOF is still
# being written back to disk for a while (benchmarks/ingest.py), which would slow the
# group's first run more than the others.
GROUPS = ("ingest", *delivery.SCENARIOS, pairs.GROUP, workers.GROUP, footprint.GROUP)
BUILDS = ("compiled", "interpreted")  # --build: the gateway measured
GroupMeasure = Callable[[Bench], dict[str, Any]]  # a group measured on the run's Bench
IDLE_CHECK_S = 1.0  # how long the machine is watched before the run
BUSY_WARNING = 0.1  # above this share of the CPUs busy before the run: a warning


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.republish is not None:
        republish(args.republish)
        return 0
    missing = [tool for tool in required_tools(args.scenarios) if shutil.which(tool) is None]
    if missing:
        print(f"error: not on PATH: {', '.join(missing)}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with gateway_build(args.build) as build:
        if build is None:
            return 2
        return measure_and_publish(argv, args, build)


def measure_and_publish(argv: list[str], args: argparse.Namespace, build: str) -> int:
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
    steal_start = steal_ticks()
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
    doc = document(
        run=_run_facts(argv, args, started, warmup_s) | {"gateway_build": build},
        machine=machine_facts(pinning, busy) | {"steal": steal_since(steal_start)},
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
        "--build",
        choices=BUILDS,
        default="compiled",
        help="the gateway measured: compiled with mypyc, as the container image ships it"
        " (default; compiles a copy of the checkout first), or the checkout interpreted",
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
        f" outside the run use over {OTHER_CPU_LIMIT * 100:.0f}%% of a core during it"
        f" (default {DEFAULT_RETRIES}, smoke 0)",
    )
    parser.add_argument(
        "--scenarios",
        help=f"comma-separated groups of {', '.join(GROUPS)} (default: all;"
        " all but ingest only when the gateway is among --systems)",
    )
    parser.add_argument(
        "--events",
        type=int,
        help=f"events per delivery drain (default {delivery.DEFAULT_EVENTS:,},"
        f" smoke {delivery.SMOKE_EVENTS:,})",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="pairs: gateway, bare_admit, bare and FastAPI, and drain: the bare client and the"
        " gateway draining, each in this many interleaved rounds (default"
        f" {pairs.DEFAULT_ROUNDS}, smoke {pairs.SMOKE_ROUNDS})",
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
    if args.rounds is None:
        args.rounds = pairs.SMOKE_ROUNDS if args.smoke else pairs.DEFAULT_ROUNDS
    if args.pairs is None:
        args.pairs = workers.SMOKE_PAIRS if args.smoke else workers.DEFAULT_PAIRS
    if args.footprint_events is None:
        args.footprint_events = footprint.SMOKE_EVENTS if args.smoke else footprint.DEFAULT_EVENTS
    if min(args.rounds, args.pairs, args.footprint_events) < 1:
        parser.error("--rounds, --pairs and --footprint-events must be at least 1")
    return args


def required_tools(groups: Sequence[str]) -> list[str]:
    """redis-server always; wrk for the groups that drive the gateway with it."""
    wrk_groups = ("ingest", "e2e", pairs.GROUP, workers.GROUP, footprint.GROUP)
    needs_wrk = any(group in groups for group in wrk_groups)
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
    return DeliveryPlan(chosen, args.events, delivery.CONNECTIONS, args.duration, args.rounds)


def _group_measures(args: argparse.Namespace) -> dict[str, GroupMeasure]:
    plan = FootprintPlan.of_run(args.footprint_events, smoke=args.smoke)
    # In this order after the delivery groups (see GROUPS).
    measures: dict[str, GroupMeasure] = {
        pairs.GROUP: lambda bench: pairs.measure_pairs(bench, args.rounds),
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
    """Every group in turn; `measures`: the later groups (pairs, workers, footprint),
    whose JSON comes back by group name."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, Children(Path(tmp)) as children:
        workdir = Path(tmp)
        store_url = start_redis(children, pinning, workdir)
        print(f"redis: {store_url}", flush=True)
        bench = Bench(
            children, pinning, scenarios, workdir, store_url, duration_s, warmup_s, retries
        )
        outcomes = [ingest.measure(bench, system) for system in systems]
        delivered = delivery.measure_delivery(bench, plan) if plan else []
        groups = {name: measure(bench) for name, measure in (measures or {}).items()}
        return outcomes, delivered, groups


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
        "rounds": args.rounds,
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


@contextmanager
def gateway_build(build: str) -> Iterator[str | None]:
    """Point the gateway's processes at the build to measure, and yield its kind as the
    copy itself reports it (gateway.build: "mypyc" or "interpreted"); None, said why on
    stderr, when the compiled copy cannot be made."""
    if build == "interpreted":
        yield _reported_kind(REPO)
        return
    with tempfile.TemporaryDirectory(prefix="bench-compiled-") as copy:
        print("compiling the gateway with mypyc (./dev.sh compiled-copy) ...", flush=True)
        made = subprocess.run(
            [str(REPO / "dev.sh"), "compiled-copy", copy], capture_output=True, text=True
        )
        if made.returncode != 0:
            print(
                f"error: the compiled gateway could not be built:\n{made.stderr.strip()}\n"
                "--build interpreted measures the checkout without compiling",
                file=sys.stderr,
            )
            yield None
            return
        print(made.stderr.strip().splitlines()[-1], flush=True)
        os.environ[GATEWAY_ROOT_ENV] = copy
        try:
            yield _reported_kind(Path(copy))
        finally:
            del os.environ[GATEWAY_ROOT_ENV]


def _reported_kind(root: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", "import gateway.build as b; print(b.kind())"],
        cwd=root, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def _default_out(smoke: bool) -> Path:
    # Smoke runs (CI) must not litter the checkout with throwaway numbers.
    return Path(tempfile.mkdtemp(prefix="bench-smoke-")) if smoke else OUT_DIR


def verdict(
    outcomes: Sequence[SystemOutcome],
    delivered: Sequence[DeliveryOutcome] = (),
    groups: dict[str, dict[str, Any]] | None = None,
) -> int:
    failed = [o.name for o in outcomes if not o.usable]
    flagged = [o.name for o in outcomes if any(s.flags() for s in o.scenarios)]
    failed += [d.name for d in delivered if not d.usable]
    flagged += [d.name for d in delivered if d.usable and d.flags()]
    failed += [name for name, group in (groups or {}).items() if not group["usable"]]
    flagged += [name for name, g in (groups or {}).items() if g["usable"] and g["flags"]]
    if flagged:
        print(
            f"WARNING: flagged runs, not comparable (their status says why): {', '.join(flagged)}",
            file=sys.stderr,
        )
    if failed:
        print(f"FAILED: no usable measurement from {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
