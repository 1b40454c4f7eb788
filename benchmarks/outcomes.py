"""What one measurement of a run was asked to do (Scenario) and what it found (the
outcomes), with the flags that make it not comparable, and each outcome as JSON.
Pure: no I/O here.

benchmarks/document.py puts these into the run's document, targets.py computes the
targets from that document, and report.py renders it as Markdown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmarks.wrkout import WrkResult

# The ingest scenarios other measurements refer to by name: the workers group reuses
# throughput's load, and the targets read all three.
THROUGHPUT, LATENCY_C1, LATENCY_HALF = "throughput", "latency_c1", "latency_half"
# A paced run that reached less than this share of its target rate did not measure
# latency at that rate.
RATE_TOLERANCE = 0.9
# Processes outside the run using more than this share of a core during a measurement
# (other tests, another benchmark) make it not comparable.
OTHER_CPU_LIMIT = 0.1
# The hypervisor taking more than this share of the CPUs' time (steal) likewise.
STEAL_LIMIT = 0.1


# The two flags' texts around their share: (before, after).
_OTHER_CPU = ("other processes used ", " of a core")
_STEAL = ("the hypervisor took ", " of the CPUs' time (steal)")


def competition_flags(other_cpu: float | None, steal_cpu: float | None) -> list[str]:
    """Flags for CPU taken by processes outside the run, or by the hypervisor."""
    flags = []
    if other_cpu is not None and other_cpu > OTHER_CPU_LIMIT:
        flags.append(f"{_OTHER_CPU[0]}{other_cpu:.0%}{_OTHER_CPU[1]}")
    if steal_cpu is not None and steal_cpu > STEAL_LIMIT:
        flags.append(f"{_STEAL[0]}{steal_cpu:.0%}{_STEAL[1]}")
    return flags


def is_competition(flag: str) -> bool:
    """Whether a flag is one of competition_flags', as a group reports it (after its
    run's name: "workers 1 pair 1: the hypervisor took 12% ...")."""
    text = flag.rpartition(": ")[2]
    return any(
        text.startswith(before) and text.endswith(after) for before, after in (_OTHER_CPU, _STEAL)
    )


@dataclass(frozen=True, slots=True)
class Scenario:
    """One load shape. `threads=None`: as many wrk threads as the load cores support.

    `payload`: every body padded to exactly this many bytes (WRK_PAD_TO); None sends
    the seed as is. `rate_of`: paced (WRK_RATE) at `rate_share` of the req/s the same
    system reached in that earlier scenario of the run.
    """

    name: str
    connections: int
    threads: int | None
    script: str = "post_fresh_key.lua"
    payload: int | None = None
    rate_of: str | None = None
    rate_share: float = 0.5
    about: str = ""

    def wrk_env(self, rate: float | None) -> dict[str, str]:
        """The wrk script's environment for this scenario (at `rate` req/s if paced)."""
        env = {} if self.payload is None else {"WRK_PAD_TO": str(self.payload)}
        if rate is not None:
            env |= {"WRK_RATE": f"{rate:.0f}", "WRK_THREADS": str(self.threads or 1)}
        return env


@dataclass(slots=True)
class ScenarioOutcome:
    scenario: str
    wrk_argv: list[str]
    output: str
    result: WrkResult | None = None
    error: str | None = None
    # Share of a core the server process used, and busy share of the load CPUs, while
    # under load (see machine.CpuWatch): they say whether the server was the limit.
    server_cpu: float | None = None
    load_cpu: float | None = None
    other_cpu: float | None = None  # processes outside the run (machine.CpuWatch)
    steal_cpu: float | None = None  # the hypervisor's share (machine.CpuWatch)
    target_rps: float | None = None  # the pace of a paced scenario
    store_keys: int | None = None  # keys in Redis after the scenario (it starts empty)
    rss_mb: float | None = None  # the server's resident memory after the scenario
    attempts: int = 1  # measurements made; the one kept was the least disturbed

    @property
    def usable(self) -> bool:
        return self.result is not None and self.result.successes > 0

    def flags(self) -> list[str]:
        """Why this run is not a clean measurement; empty when it is."""
        result = self.result
        if result is None:
            return [f"failed: {self.error}"]
        flags = [] if result.successes else ["no successful requests"]
        if result.non2xx:
            flags.append(f"{result.non2xx} non-2xx")
        errors = result.socket_errors
        if errors.total:
            flags.append(
                f"{errors.total} socket errors (connect {errors.connect}, read {errors.read},"
                f" write {errors.write}, timeout {errors.timeout})"
            )
        flags += competition_flags(self.other_cpu, self.steal_cpu)
        if self.target_rps and result.rps < RATE_TOLERANCE * self.target_rps:
            flags.append(f"reached {result.rps:,.0f} of the {self.target_rps:,.0f} req/s paced")
        return flags


@dataclass(slots=True)
class SystemOutcome:
    name: str
    description: str
    argv: list[str] = field(default_factory=list)
    scenarios: list[ScenarioOutcome] = field(default_factory=list)
    error: str | None = None
    ready_s: float | None = None  # from exec to its ready URL answering 200

    @property
    def usable(self) -> bool:
        """Started, stayed up, and every scenario produced successful requests."""
        return self.error is None and all(s.usable for s in self.scenarios)


def scenario_json(outcome: ScenarioOutcome) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "server_cpu": outcome.server_cpu,
        "load_cpu": outcome.load_cpu,
        "other_cpu": outcome.other_cpu,
        "steal_cpu": outcome.steal_cpu,
        "target_rps": rounded(outcome.target_rps, 1),
        # Keys in Redis after the scenario: for a system that stores, a cross-check that
        # its 200s were admitted (one marker per fresh key, plus its stream).
        "store_keys": outcome.store_keys,
        "rss_mb": outcome.rss_mb,
        "attempts": outcome.attempts,
        "wrk_argv": outcome.wrk_argv,
        "flags": outcome.flags(),
    }
    result = outcome.result
    if result is None:
        return {"error": outcome.error, **doc, "wrk_output": outcome.output}
    return {
        "rps": result.rps,
        "p50_us": result.p50_us,
        "p75_us": result.p75_us,
        "p90_us": result.p90_us,
        "p99_us": result.p99_us,
        "requests": result.requests,
        "duration_s": result.duration_s,
        "non2xx": result.non2xx,
        "errors": result.socket_errors.total,
        "socket_errors": {
            "connect": result.socket_errors.connect,
            "read": result.socket_errors.read,
            "write": result.socket_errors.write,
            "timeout": result.socket_errors.timeout,
        },
        "clean": result.clean,
        **doc,
        "wrk_output": outcome.output,
    }


@dataclass(slots=True)
class DeliveryOutcome:
    """One delivery measurement: what the sink counted over a measured interval."""

    system: str  # "bare_client" or "gateway"
    scenario: str  # "post" (the bare client), "drain" or "e2e"
    # Its interleaved round of post and drain (benchmarks/drain_rounds.py); None: measured
    # once (e2e, or post without drain).
    round: int | None = None
    argv: list[str] = field(default_factory=list)
    expected: int | None = None  # what should reach the sink: posted, pre-filled or acked
    events: int | None = None  # what the sink counted
    seconds: float | None = None  # the measured interval (e2e: wrk's duration + the drain)
    drain_s: float | None = None
    acked_rps: float | None = None  # e2e: 2xx answers per second, by wrk
    # Shares of a core over the interval: the sender (bare client or gateway, on the
    # server CPU), the sink process, and all load CPUs together (sink, Redis, wrk).
    sender_cpu: float | None = None
    sink_cpu: float | None = None
    load_cpu: float | None = None
    other_cpu: float | None = None  # processes outside the run (machine.CpuWatch)
    steal_cpu: float | None = None  # the hypervisor's share (machine.CpuWatch)
    facts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def rps(self) -> float | None:
        if self.events is None or not self.seconds:
            return None
        return self.events / self.seconds

    @property
    def usable(self) -> bool:
        return self.error is None and bool(self.events)

    @property
    def name(self) -> str:
        """What the run's verdict calls it: one of several rounds says which."""
        name = f"{self.system} {self.scenario}"
        return name if self.round is None else f"{name} round {self.round}"

    def flags(self) -> list[str]:
        """Why this is not a clean measurement; empty when it is."""
        flags = ([f"failed: {self.error}"] if self.error else []) + self.problems
        return flags + competition_flags(self.other_cpu, self.steal_cpu)


def delivery_json(outcome: DeliveryOutcome) -> dict[str, Any]:
    rps = outcome.rps
    return {
        "system": outcome.system,
        "expected": outcome.expected,
        "events": outcome.events,
        "seconds": rounded(outcome.seconds),
        "rps": rounded(rps, 1),
        "drain_s": rounded(outcome.drain_s),
        "acked_rps": rounded(outcome.acked_rps, 1),
        "sender_cpu": outcome.sender_cpu,
        "sink_cpu": outcome.sink_cpu,
        "load_cpu": outcome.load_cpu,
        "other_cpu": outcome.other_cpu,
        "steal_cpu": outcome.steal_cpu,
        "usable": outcome.usable,
        "flags": outcome.flags(),
        "error": outcome.error,
        "argv": outcome.argv,
        **outcome.facts,
    }


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
