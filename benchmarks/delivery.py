"""The delivery half, measured against a bare client in the same run.

Three measurements, each with a fresh sink (benchmarks/sink_server.py, on the load
CPUs) and, for the gateway, an empty store:

- post: benchmarks/bare_client.py, pinned where the gateway runs, POSTs `events`
  prebuilt requests (the seed as the gateway delivers it) over `connections`
  keep-alive connections: the ceiling of our stack for delivering.
- drain: `events` queued beforehand through the gateway's own admit script; then the
  gateway starts with the forwarder on. Measured from /readyz answering 200 until the
  sink has counted them all and the queue is empty.
- e2e: wrk posts fresh keys to the gateway (forwarder on) for `duration_s`, with the
  ingest scenarios' 1 KiB bodies (so it compares with their bare row), then the
  backlog drains; delivered/s = sink count / (wrk's duration + drain time).

With drain, post and drain run in `rounds` interleaved rounds, the order reversed every
other round (benchmarks/drain_rounds.py): the drain target is their ratio, and the
machine's speed drifts between two measurements minutes apart. e2e runs once, after.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from benchmarks.backlog import Backlog, gateway_config, prefill, seed_event
from benchmarks.bench import Bench, flush_store, prepare_system, run_wrk, start_launch
from benchmarks.children import Child, ChildFailed, wait_until
from benchmarks.delivery_checks import check_count, check_gateway
from benchmarks.drain_rounds import DRAIN, POST, SIDES, round_order
from benchmarks.machine import CpuWatch, Pinning
from benchmarks.outcomes import DeliveryOutcome, Scenario, ScenarioOutcome
from benchmarks.pairs_report import interleaved_rounds
from benchmarks.systems import FORWARDING_GATEWAY, REPO, SINK, Launch, SystemSetupError
from benchmarks.wrkout import WrkResult
from gateway.config import Config

SCENARIOS = ("drain", "e2e")
DEFAULT_EVENTS = 100_000
SMOKE_EVENTS = 2_000
CONNECTIONS = 64
E2E_PAYLOAD = 1024  # bytes per body, as in the ingest scenarios
WARMUP_S = 1
# Generous: a healthy gateway drains 100k events in seconds; a stuck one fails the row.
DRAIN_TIMEOUT_BASE_S = 60.0
DRAIN_TIMEOUT_PER_EVENT_S = 1 / 500
BARE_CLIENT_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    scenarios: tuple[str, ...]  # a subset of SCENARIOS; the bare client always runs
    events: int
    connections: int
    duration_s: int
    rounds: int = 1  # of post and drain, interleaved; with drain only

    def drain_timeout_s(self, events: int) -> float:
        return DRAIN_TIMEOUT_BASE_S + events * DRAIN_TIMEOUT_PER_EVENT_S


@dataclass(frozen=True, slots=True)
class Sink:
    child: Child
    url: str  # where deliveries go
    count_url: str

    def count(self) -> int | None:
        """POSTs received so far; None if the sink did not answer."""
        try:
            with urllib.request.urlopen(self.count_url, timeout=2.0) as response:
                return int(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def cpu_seconds(self) -> float | None:
        return self.child.cpu_seconds()


def measure_delivery(bench: Bench, plan: DeliveryPlan) -> list[DeliveryOutcome]:
    """Every measurement, in the order made: with drain, the rounds' (each with its
    round), else the bare client's alone; then e2e."""
    print(f"\n== delivery: {pinning_line(bench.pinning)}", flush=True)
    if DRAIN in plan.scenarios:
        both = f"{SIDES[POST]} and {SIDES[DRAIN]}"
        print(f"   {both} in {interleaved_rounds(plan.rounds)}", flush=True)
        measured = [
            _side(bench, plan, side, round_)
            for round_ in range(1, plan.rounds + 1)
            for side in round_order(round_)
        ]
    else:
        measured = [_side(bench, plan, POST, None)]
    if "e2e" in plan.scenarios:
        measured.append(_measured(DeliveryOutcome("gateway", "e2e"), _e2e(bench, plan)))
    return measured


def _side(bench: Bench, plan: DeliveryPlan, side: str, round_: int | None) -> DeliveryOutcome:
    """One side of the drain target's ratio: the bare client's post or the gateway's
    drain, in `round_` (None: the only one)."""
    post = side == POST
    system = "bare_client" if post else "gateway"
    outcome = DeliveryOutcome(system, side, round=round_, expected=plan.events)
    suffix = "" if round_ is None else f"-r{round_}"  # its children and workdirs: unique
    return _measured(outcome, (_bare_client if post else _drain)(bench, plan, suffix))


def _measured(
    outcome: DeliveryOutcome, measure: Callable[[DeliveryOutcome], None]
) -> DeliveryOutcome:
    _guarded(outcome, measure)
    where = "" if outcome.round is None else f" (round {outcome.round})"
    print(f"   {outcome.system} {outcome.scenario}{where}: {_summary(outcome)}", flush=True)
    return outcome


def pinning_line(pinning: Pinning) -> str:
    if not pinning.pinned:
        return pinning.note
    server, load = ",".join(map(str, pinning.server_cpus)), ",".join(map(str, pinning.load_cpus))
    return f"bare client and gateway on CPU {server}; sink, Redis and wrk on CPU {load} (taskset)"


def _guarded(outcome: DeliveryOutcome, measure: Callable[[DeliveryOutcome], None]) -> None:
    """Run one measurement; a failure is recorded on its row, never ends the run."""
    try:
        measure(outcome)
    except (ChildFailed, SystemSetupError, redis.RedisError, OSError, ValueError) as exc:
        outcome.error = str(exc)


# -- the bare client ----------------------------------------------------------------


def _bare_client(
    bench: Bench, plan: DeliveryPlan, suffix: str
) -> Callable[[DeliveryOutcome], None]:
    def measure(outcome: DeliveryOutcome) -> None:
        sink = start_sink(bench, f"sink-post{suffix}")
        try:
            _run_bare_client(bench, plan, sink, outcome, f"bare-client{suffix}")
        finally:
            bench.children.stop(sink.child)

    return measure


def _run_bare_client(
    bench: Bench, plan: DeliveryPlan, sink: Sink, outcome: DeliveryOutcome, label: str
) -> None:
    argv = [sys.executable, "-m", "benchmarks.bare_client", "--url", sink.url]
    argv += ["--requests", str(plan.events), "--connections", str(plan.connections)]
    outcome.argv = argv = bench.pinning.server(argv)
    sink_cpu_start = sink.cpu_seconds()
    child = bench.children.start(label, argv, cwd=REPO)
    code = bench.children.wait(child, BARE_CLIENT_TIMEOUT_S)
    result = _last_json_line(child.output())
    if result is None:
        raise ChildFailed(f"bare client exited {code} without a result: {child.log_tail(3)}")
    outcome.facts["client"] = result
    outcome.seconds = float(result["seconds"])
    outcome.events = _count(sink)
    outcome.sender_cpu = _share(result["cpu_s"], outcome.seconds)
    outcome.sink_cpu = _share(_delta(sink.cpu_seconds(), sink_cpu_start), outcome.seconds)
    if code != 0 or result["errors"] or result["non2xx"]:
        outcome.problems.append(
            f"bare client: {result['errors']} errors, {result['non2xx']} non-2xx (exit {code})"
        )
    check_count(outcome)


def _last_json_line(output: str) -> dict[str, Any] | None:
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            found: dict[str, Any] = json.loads(line)
            return found
    return None


# -- the gateway draining a backlog ---------------------------------------------------


def _drain(bench: Bench, plan: DeliveryPlan, suffix: str) -> Callable[[DeliveryOutcome], None]:
    label = f"gateway-drain{suffix}"

    def measure(outcome: DeliveryOutcome) -> None:
        flush_store(bench.store_url)
        sink = start_sink(bench, f"sink-drain{suffix}")
        try:
            launch = prepare_system(bench, FORWARDING_GATEWAY, label, _to(sink))
            outcome.argv = list(launch.argv)
            with _backlog(bench, launch) as (backlog, config):
                outcome.facts["prefill_s"] = round(prefill(config, plan.events), 3)
                queued = backlog.state().queued
                if queued != plan.events:
                    raise SystemSetupError(f"prefill left {queued} entries, not {plan.events}")
                _run_drain(bench, plan, launch, sink, backlog, outcome, label)
        finally:
            bench.children.stop(sink.child)

    return measure


def _run_drain(
    bench: Bench,
    plan: DeliveryPlan,
    launch: Launch,
    sink: Sink,
    backlog: Backlog,
    outcome: DeliveryOutcome,
    label: str,
) -> None:
    gateway = start_launch(bench, launch, label)
    try:
        ready_at = time.monotonic()
        outcome.facts["sink_at_ready"] = sink.count()
        watch = _Watch(bench, gateway, sink)

        def delivered_all() -> bool:
            count = sink.count()
            return count is not None and count >= plan.events and backlog.state().empty

        what = f"delivered {plan.events} events and emptied the queue"
        done_at = _wait_drained(delivered_all, [gateway, sink.child], plan, backlog, sink, what)
        outcome.seconds = outcome.drain_s = done_at - ready_at
        watch.record(outcome, outcome.seconds)
        outcome.events = _count(sink)
        check_gateway(outcome, gateway, launch, backlog.state())
        check_count(outcome)
    finally:
        bench.children.stop(gateway)


# -- the gateway end to end under wrk ---------------------------------------------------


def _e2e(bench: Bench, plan: DeliveryPlan) -> Callable[[DeliveryOutcome], None]:
    def measure(outcome: DeliveryOutcome) -> None:
        flush_store(bench.store_url)
        sink = start_sink(bench, "sink-e2e")
        try:
            launch = prepare_system(bench, FORWARDING_GATEWAY, "gateway-e2e", _to(sink))
            outcome.argv = list(launch.argv)
            with _backlog(bench, launch) as (backlog, _):
                gateway = start_launch(bench, launch, "gateway-e2e")
                try:
                    _run_e2e(bench, plan, launch, gateway, sink, backlog, outcome)
                finally:
                    bench.children.stop(gateway)
        finally:
            bench.children.stop(sink.child)

    return measure


def _run_e2e(
    bench: Bench,
    plan: DeliveryPlan,
    launch: Launch,
    gateway: Child,
    sink: Sink,
    backlog: Backlog,
    outcome: DeliveryOutcome,
) -> None:
    watched = [gateway, sink.child]
    threads = bench.pinning.wrk_threads
    scenario = Scenario("e2e", plan.connections, threads, payload=E2E_PAYLOAD)
    warmup = run_wrk(bench, "gateway-e2e-warmup", scenario, launch.target_url, WARMUP_S)
    outcome.facts["warmup"] = _wrk_facts(warmup)
    _wait_drained(_emptied(backlog), watched, plan, backlog, sink, "drained the warm-up")
    base = _count(sink)
    watch = _Watch(bench, gateway, sink)
    load = run_wrk(bench, "gateway-e2e", scenario, launch.target_url, plan.duration_s)
    stopped_at = time.monotonic()
    outcome.facts |= {"wrk": _wrk_facts(load), "at_wrk_exit": _at(backlog, sink, base)}
    if load.result is None:
        raise ChildFailed(f"wrk: {load.error}")
    what = "drained the backlog after wrk"
    drained_at = _wait_drained(_emptied(backlog), watched, plan, backlog, sink, what)
    watch.record(outcome, drained_at - watch.started)
    drain_s, events = drained_at - stopped_at, _count(sink) - base
    _record_e2e(outcome, load.result, drain_s, events, in_flight=plan.connections)
    outcome.problems += load.flags()
    check_gateway(outcome, gateway, launch, backlog.state())


def _record_e2e(
    outcome: DeliveryOutcome, load: WrkResult, drain_s: float, events: int, *, in_flight: int
) -> None:
    """Delivered/s over load + drain; the sink must have every acked event.

    A few more than acked is normal: requests in flight when wrk stops are admitted
    (and delivered) but their answers are not counted by wrk, at most one per connection.
    """
    outcome.drain_s = drain_s
    outcome.seconds = load.duration_s + drain_s
    outcome.events, outcome.expected = events, load.successes
    outcome.acked_rps = load.successes / load.duration_s
    if events < load.successes:
        outcome.problems.append(f"sink counted {events}, fewer than the {load.successes} acked")
    if events > load.successes + in_flight:
        extra = events - load.successes
        outcome.problems.append(f"sink counted {extra} more than acked: duplicate deliveries?")


def _wrk_facts(outcome: ScenarioOutcome) -> dict[str, Any]:
    result = outcome.result
    facts: dict[str, Any] = {"argv": outcome.wrk_argv, "flags": outcome.flags()}
    if result is not None:
        facts |= {"requests": result.requests, "rps": result.rps, "p99_us": result.p99_us}
        facts |= {"duration_s": result.duration_s, "non2xx": result.non2xx}
    return facts | {"output": outcome.output}


def _emptied(backlog: Backlog) -> Callable[[], bool]:
    return lambda: backlog.state().empty


def _at(backlog: Backlog, sink: Sink, base: int) -> dict[str, Any]:
    return {**backlog.state().as_dict(), "sink": _count(sink) - base}


# -- shared pieces ------------------------------------------------------------------------


def start_sink(bench: Bench, label: str) -> Sink:
    launch = prepare_system(bench, SINK, label)
    child = start_launch(bench, launch, label, on_load_cpus=True)
    return Sink(child, launch.target_url, launch.ready_url)


def _to(sink: Sink) -> dict[str, str]:
    return {"forward_url": sink.url}


@contextlib.contextmanager
def _backlog(bench: Bench, launch: Launch) -> Iterator[tuple[Backlog, Config]]:
    """The queue of a prepared gateway launch, and the config that launch will run with."""
    argv = list(launch.argv)
    config = gateway_config(Path(argv[argv.index("--config") + 1]), launch.env)
    with Backlog(bench.store_url, config, seed_event(config).targets) as backlog:
        yield backlog, config


class _Watch:
    """CPU shares over a measured interval: the gateway, the sink, the load CPUs."""

    def __init__(self, bench: Bench, gateway: Child, sink: Sink) -> None:
        self.started = time.monotonic()
        self._cpu = CpuWatch(gateway.cpu_seconds, bench.pinning, bench.children.sessions)
        self._sink = sink
        self._sink_start = sink.cpu_seconds()

    def record(self, outcome: DeliveryOutcome, seconds: float) -> None:
        outcome.sender_cpu = self._cpu.server_share()
        outcome.load_cpu = self._cpu.load_share()
        outcome.other_cpu, outcome.steal_cpu = self._cpu.other_share(), self._cpu.steal_share()
        sink_cpu = _delta(self._sink.cpu_seconds(), self._sink_start)
        outcome.sink_cpu = _share(sink_cpu, seconds)


def _wait_drained(
    done: Callable[[], bool],
    watched: Sequence[Child],
    plan: DeliveryPlan,
    backlog: Backlog,
    sink: Sink,
    what: str,
) -> float:
    """Poll until `done`; on a timeout, say where the queue and the sink stood."""
    state = backlog.state()
    timeout_s = plan.drain_timeout_s(state.queued + (state.pending or 0) + state.retrying)
    try:
        return wait_until(done, watched, timeout_s, what)
    except ChildFailed as exc:
        state = backlog.state()
        raise ChildFailed(f"{exc} (queue {state.as_dict()}, sink {sink.count()})") from None


def _share(cpu_s: float | None, seconds: float | None) -> float | None:
    if cpu_s is None or not seconds:
        return None
    return round(cpu_s / seconds, 3)


def _delta(now: float | None, start: float | None) -> float | None:
    return None if now is None or start is None else now - start


def _count(sink: Sink) -> int:
    count = sink.count()
    if count is None:
        raise ChildFailed(f"the sink does not answer {sink.count_url}")
    return count


def _summary(outcome: DeliveryOutcome) -> str:
    if outcome.error:
        return f"FAILED: {outcome.error}"
    line = f"{outcome.events or 0:,} events in {outcome.seconds or 0:.2f}s"
    rps = outcome.rps
    line += "" if rps is None else f" = {rps:,.0f}/s"
    if outcome.acked_rps is not None and outcome.drain_s is not None:
        line += f" (acked {outcome.acked_rps:,.0f} req/s under load; drain {outcome.drain_s:.2f}s)"
    flags = outcome.flags()
    return line + (f"  ⚠ {'; '.join(flags)}" if flags else "")
