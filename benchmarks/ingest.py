"""The ingest group: each system in turn (benchmarks/systems.py), driven by wrk with the
identical load.

Each system starts on an emptied Redis, gets the run's warm-up (none in a smoke run),
then every scenario of SCENARIOS in order, each on an emptied Redis; latency_half is
paced at half the req/s the same system reached in throughput. A scenario during which
processes outside the run used over outcomes.OTHER_CPU_LIMIT of a core is measured
again, up to the run's --retries times, and the least disturbed attempt is kept.
"""

from __future__ import annotations

import redis

from benchmarks.bench import Bench, flush_store, run_wrk, start_system, store_keys
from benchmarks.children import Child, ChildFailed
from benchmarks.machine import CpuWatch
from benchmarks.outcomes import (
    LATENCY_C1,
    LATENCY_HALF,
    OTHER_CPU_LIMIT,
    THROUGHPUT,
    Scenario,
    ScenarioOutcome,
    SystemOutcome,
)
from benchmarks.systems import System, SystemSetupError

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
        outcome.other_cpu, outcome.steal_cpu = cpu.other_share(), cpu.steal_share()
        outcome.store_keys = store_keys(bench.store_url)
        outcome.rss_mb = server.rss_mb()
        attempts.append(outcome)
        if outcome.other_cpu <= OTHER_CPU_LIMIT or attempt == bench.retries:
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
    shares = (outcome.server_cpu, outcome.load_cpu, outcome.other_cpu, outcome.steal_cpu)
    if any(share is not None for share in shares):
        line += f", CPU server/load/other/steal {'/'.join(_percent(share) for share in shares)}"
    flags = outcome.flags()
    return line + (f"  ⚠ {'; '.join(flags)}" if flags else "")


def _percent(share: float | None) -> str:
    return "—" if share is None else f"{share:.0%}"
