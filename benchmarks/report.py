"""What a run found, as a JSON document and a Markdown table. Pure: no I/O here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks import process_report
from benchmarks.wrkout import WrkResult

# The ratio columns of the ingest table: req/s relative to these systems, same scenario.
RATIO_BASELINES = (("bare", "vs bare"), ("bare_admit", "vs bare+admit"), ("fastapi", "vs FastAPI"))
# A paced run that reached less than this share of its target rate did not measure
# latency at that rate.
RATE_TOLERANCE = 0.9
# Processes outside the run using more than this share of a core during a measurement
# (other tests, another benchmark) make it not comparable.
OTHER_CPU_LIMIT = 0.1


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
        if self.other_cpu is not None and self.other_cpu > OTHER_CPU_LIMIT:
            flags.append(f"other processes used {self.other_cpu:.0%} of a core")
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
        "target_rps": _rounded(outcome.target_rps, 1),
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

    def flags(self) -> list[str]:
        """Why this is not a clean measurement; empty when it is."""
        flags = ([f"failed: {self.error}"] if self.error else []) + self.problems
        if self.other_cpu is not None and self.other_cpu > OTHER_CPU_LIMIT:
            flags.append(f"other processes used {self.other_cpu:.0%} of a core")
        return flags


def delivery_json(outcome: DeliveryOutcome) -> dict[str, Any]:
    rps = outcome.rps
    return {
        "system": outcome.system,
        "expected": outcome.expected,
        "events": outcome.events,
        "seconds": _rounded(outcome.seconds),
        "rps": _rounded(rps, 1),
        "drain_s": _rounded(outcome.drain_s),
        "acked_rps": _rounded(outcome.acked_rps, 1),
        "sender_cpu": outcome.sender_cpu,
        "sink_cpu": outcome.sink_cpu,
        "load_cpu": outcome.load_cpu,
        "other_cpu": outcome.other_cpu,
        "usable": outcome.usable,
        "flags": outcome.flags(),
        "error": outcome.error,
        "argv": outcome.argv,
        **outcome.facts,
    }


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def document(
    *,
    run: dict[str, Any],
    machine: dict[str, Any],
    scenarios: Sequence[Scenario],
    outcomes: Sequence[SystemOutcome],
    delivery: Sequence[DeliveryOutcome] = (),
    delivery_settings: dict[str, Any] | None = None,
    workers: dict[str, Any] | None = None,
    footprint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`workers`, `footprint`: those groups' JSON (benchmarks/workers.py, footprint.py),
    None when they did not run."""
    doc = {
        "run": run,
        "machine": machine,
        "scenarios": {
            s.name: {
                "connections": s.connections,
                "threads": s.threads,
                "script": s.script,
                "payload": s.payload,
                "rate_of": s.rate_of,
                "rate_share": s.rate_share if s.rate_of else None,
                "about": s.about,
            }
            for s in scenarios
        },
        "systems": {
            o.name: {
                "description": o.description,
                "argv": o.argv,
                "usable": o.usable,
                "error": o.error,
                "ready_s": _rounded(o.ready_s),
                "scenarios": {s.scenario: scenario_json(s) for s in o.scenarios},
            }
            for o in outcomes
        },
        "delivery": {
            **(delivery_settings or {}),
            "results": {o.scenario: delivery_json(o) for o in delivery},
        },
    }
    groups = {"workers": workers, "footprint": footprint}
    doc |= {name: group for name, group in groups.items() if group is not None}
    doc["targets"] = targets(doc)
    return doc


# -- the targets, as ratios of this run's own measurements ----------------------

GATEWAY = "gateway"
THROUGHPUT, LATENCY_C1, LATENCY_HALF = "throughput", "latency_c1", "latency_half"


@dataclass(frozen=True, slots=True)
class _Num:
    """One measured number, where it came from, and whether its run was clean."""

    value: float
    label: str
    clean: bool


def _ingest(doc: dict[str, Any], system: str, scenario: str, key: str) -> _Num | None:
    s = doc["systems"].get(system, {}).get("scenarios", {}).get(scenario)
    if not s or s.get(key) is None:
        return None
    return _Num(float(s[key]), f"{system} {scenario}", not s["flags"])


def _delivered(doc: dict[str, Any], scenario: str, key: str = "rps") -> _Num | None:
    r = doc.get("delivery", {}).get("results", {}).get(scenario)
    if not r or r.get(key) is None:
        return None
    return _Num(float(r[key]), f"{r['system']} {scenario}", not r["flags"])


def _target(
    measure: str,
    goal: str,
    value: float | None,
    met: bool | None,
    basis: str,
    inputs: Sequence[_Num | None],
    shown: str | None = None,
) -> dict[str, Any]:
    """`shown`: the measured cell as text, where a number and a unit would not say it."""
    clean = all(n is not None and n.clean for n in inputs)
    return {
        "measure": measure,
        "target": goal,
        "value": _rounded(value),
        "met": met,
        "basis": basis,
        # A row not measured has nothing to be clean or not.
        "clean": clean if inputs and value is not None else None,
        "shown": shown,
    }


def _group_target(measure: str, goal: str, found: dict[str, Any]) -> dict[str, Any]:
    """A row from one of process_report's `found` dicts (the workers or footprint group)."""
    value = found["value"]
    num = _Num(0.0 if value is None else value, measure, found["clean"])
    return _target(measure, goal, value, found["met"], found["basis"], [num], found["shown"])


def _limit_target(
    measure: str,
    goal: str,
    num: _Num | None,
    limit: float,
    basis: Callable[[_Num], str],
    scale: float = 1.0,
) -> dict[str, Any]:
    """A measured value against an upper limit (shown times `scale`)."""
    if num is None:
        return _target(measure, goal, None, None, "not measured in this run", [num])
    return _target(measure, goal, num.value * scale, num.value <= limit, basis(num), [num])


def _ratio_target(
    measure: str, bound: float, num: _Num | None, den: _Num | None, unit: str, *, at_most: bool
) -> dict[str, Any]:
    goal = f"{'≤' if at_most else '≥'} {bound:g}x"
    if num is None or den is None or not den.value:
        return _target(measure, goal, None, None, "not measured in this run", [num, den])
    ratio = num.value / den.value
    basis = f"{num.label} {num.value:,.0f} / {den.label} {den.value:,.0f} {unit}"
    met = ratio <= bound if at_most else ratio >= bound
    return _target(measure, goal, ratio, met, basis, [num, den])


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 6's target table, each row computed from this run only (None: not measured)."""
    rps = {name: _ingest(doc, name, THROUGHPUT, "rps") for name in (GATEWAY, *_BASES)}
    rows = [
        _ratio_target(
            f"ingest-only acked req/s vs {label}",
            bound,
            rps[GATEWAY],
            rps[name],
            "req/s",
            at_most=False,
        )
        for name, label, bound in (
            ("bare", "bare", 0.45),
            ("bare_admit", "bare + admit", 1.0),
            ("fastapi", "FastAPI", 10.0),
        )
    ]
    rows.append(
        _ratio_target(
            "end to end delivered/s (load + drain) vs bare",
            0.25,
            _delivered(doc, "e2e"),
            rps["bare"],
            "/s",
            at_most=False,
        )
    )
    rows.append(
        _limit_target(
            "backlog back to 0 after the load stops", "≤ 2 s",
            _delivered(doc, "e2e", "drain_s"), 2.0,
            lambda n: f"{n.value:.2f} s (gateway e2e)",
        )
    )  # fmt: skip
    rows.append(
        _ratio_target(
            "p50 ack latency, 1 connection, vs bare + one awaited Redis call",
            1.3,
            _ingest(doc, GATEWAY, LATENCY_C1, "p50_us"),
            _ingest(doc, "bare_call", LATENCY_C1, "p50_us"),
            "µs",
            at_most=True,
        )
    )
    rows.append(
        _limit_target(
            "p99 ack latency at half the maximum rate (ms)", "≤ 1 ms",
            _ingest(doc, GATEWAY, LATENCY_HALF, "p99_us"), 1000,
            lambda n: f"{n.label} {n.value:,.0f} µs", scale=1 / 1000,
        )
    )  # fmt: skip
    rows.append(
        _ratio_target(
            "forwarder draining a pre-filled stream vs a bare httptools client",
            0.5,
            _delivered(doc, "drain"),
            _delivered(doc, "post"),
            "events/s",
            at_most=False,
        )
    )
    rows += [_ready_row(doc), _rss_row(doc), _workers_row(doc)]
    return rows


_BASES = ("bare", "bare_admit", "bare_call", "fastapi")
READY, RSS, WORKERS = "exec to /readyz 200", "RSS after 1M events", "2 workers vs 1 (SO_REUSEPORT)"


def _ready_row(doc: dict[str, Any]) -> dict[str, Any]:
    """The footprint group's starts; without it, the ingest gateway's one start."""
    if "footprint" in doc:
        return _group_target(READY, "≤ 1 s", process_report.ready_target(doc["footprint"]))
    ready = doc["systems"].get(GATEWAY, {}).get("ready_s")
    if ready is None:
        return _target(READY, "≤ 1 s", None, None, "not measured in this run", [])
    basis = f"{ready:.2f} s (gateway, ingest config; polled every 20 ms)"
    return _target(READY, "≤ 1 s", ready, ready <= 1.0, basis, [])


def _rss_row(doc: dict[str, Any]) -> dict[str, Any]:
    """The footprint group's; without it, not the target's measurement: what this run saw."""
    goal = "≤ 80 MB, no growth"
    if "footprint" in doc:
        return _group_target(RSS, goal, process_report.rss_target(doc["footprint"]))
    gateway = doc["systems"].get(GATEWAY, {}).get("scenarios", {})
    rss = [s["rss_mb"] for s in gateway.values() if s.get("rss_mb") is not None]
    requests = sum(s.get("requests", 0) for s in gateway.values())
    basis = "not measured by this harness"
    if rss:
        basis += f" (gateway RSS after this run's {requests:,} ingest requests: {rss[-1]:.0f} MB)"
    return _target(RSS, goal, None, None, basis, [])


def _workers_row(doc: dict[str, Any]) -> dict[str, Any]:
    if "workers" in doc:
        return _group_target(WORKERS, "reported", process_report.workers_target(doc["workers"]))
    return _target(WORKERS, "reported", None, None, "not measured by this harness", [])


_TARGETS_HEADER = "| measure | target | measured | met | from |\n|---|---|--:|---|---|"


def _target_rows(rows: Sequence[dict[str, Any]]) -> list[str]:
    out = []
    for row in rows:
        value = row["value"]
        if row.get("shown"):
            measured = row["shown"]
        elif value is None:
            measured = "—"
        elif row["target"].endswith("x"):
            measured = f"{value:.2f}x"
        else:
            measured = f"{value:.2f} {'ms' if 'ms' in row['target'] else 's'}"
        met = {True: "✓", False: "✗", None: "—"}[row["met"]]
        if row["clean"] is False:
            met += " ⚠ runs with errors"
        cells = [row["measure"], row["target"], measured, met, row["basis"]]
        out.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return out


# -- the ingest table -------------------------------------------------------------------

# Numbers right-aligned; the last column says whether the row is a measurement at all.
_HEADER = (
    "| system | scenario | req/s | "
    + " | ".join(label for _, label in RATIO_BASELINES)
    + " | p50 µs | p90 µs | p99 µs | non-2xx | errors | CPU server/load/other | status |\n"
    + "|---|---|--:|"
    + "--:|" * len(RATIO_BASELINES)
    + "--:|--:|--:|--:|--:|--:|---|"
)
_EMPTY = [""] * (7 + len(RATIO_BASELINES))


def markdown(doc: dict[str, Any], chart: str | None = None) -> str:
    """The report: the targets, the tables, then how they were produced.

    `chart`: the PNG's file name, relative to where this Markdown is written."""
    run, machine = doc["run"], doc["machine"]
    parts = [f"Run {run['started']}: `{run['command']}`"]
    if run.get("commit"):
        dirty = run.get("uncommitted") or []
        changes = f" plus uncommitted changes to {', '.join(dirty)}" if dirty else ""
        parts[0] += f", on commit {run['commit']}{changes}."
    parts.append(f"Pinning: {machine['pinning']['note']}.")
    if chart:
        parts.append(f"![req/s and p50/p99 ack latency per system]({chart})")
    groups = [doc.get(name) for name in ("workers", "footprint")]
    if doc["systems"] or doc.get("delivery", {}).get("results") or any(groups):
        parts += [
            "## Targets (issue 6), as ratios within this run",
            "\n".join([_TARGETS_HEADER, *_target_rows(doc.get("targets", []))]),
        ]
    if doc["systems"]:
        parts += [
            "## Ingest",
            "\n".join([_HEADER, *_rows(doc["systems"])]),
            _scenarios_note(doc["scenarios"], run),
            "\n".join(_system_notes(doc["systems"])),
        ]
    delivery = doc.get("delivery", {})
    if delivery.get("results"):
        parts += [
            "## Delivery",
            "\n".join([_DELIVERY_HEADER, *_delivery_rows(delivery["results"])]),
            _delivery_note(delivery),
        ]
    if doc.get("workers"):
        parts += process_report.workers_section(doc["workers"])
    if doc.get("footprint"):
        parts += process_report.footprint_section(doc["footprint"])
    parts.append(_machine_note(machine))
    return "\n\n".join(parts) + "\n"


def _rows(systems: dict[str, Any]) -> list[str]:
    bases = {name: systems.get(name, {}).get("scenarios", {}) for name, _ in RATIO_BASELINES}
    rows = []
    for name, system in systems.items():
        if system["error"] and not system["scenarios"]:
            rows.append(_row(name, "—", _EMPTY, f"✗ failed to start: {_first_line(system)}"))
        for scenario, s in system["scenarios"].items():
            same = {base: scenarios.get(scenario) for base, scenarios in bases.items()}
            rows.append(_scenario_row(name, scenario, s, same))
        if system["error"] and system["scenarios"]:
            rows.append(_row(name, "—", _EMPTY, f"✗ {_first_line(system)}"))
    return rows


def _scenario_row(
    system: str, scenario: str, s: dict[str, Any], bases: dict[str, dict[str, Any] | None]
) -> str:
    status = "ok" if not s["flags"] else "⚠ " + "; ".join(s["flags"])
    if s.get("attempts", 1) > 1:
        status += f" (the least disturbed of {s['attempts']} attempts)"
    label = scenario
    if s.get("target_rps"):
        label += f" @{s['target_rps']:,.0f}/s"
    if "rps" not in s:
        return _row(system, label, _EMPTY, "✗ " + "; ".join(s["flags"]))
    cells = [f"{s['rps']:,.0f}"]
    for base in bases.values():
        cells.append(f"{s['rps'] / base['rps']:.2f}x" if base and base.get("rps") else "—")
    cells += [f"{s[k]:,.0f}" for k in ("p50_us", "p90_us", "p99_us")]
    cells += [f"{s['non2xx']:,}", f"{s['errors']:,}"]
    cells.append(" / ".join(_percent(s.get(k)) for k in ("server_cpu", "load_cpu", "other_cpu")))
    return _row(system, label, cells, status)


def _percent(share: float | None) -> str:
    return "—" if share is None else f"{share:.0%}"


def _row(system: str, scenario: str, cells: list[str], status: str) -> str:
    return "| " + " | ".join([system, scenario, *cells, status.replace("|", "/")]) + " |"


def _first_line(system: dict[str, Any]) -> str:
    return str(system["error"]).splitlines()[0][:160]


def _scenarios_note(scenarios: dict[str, Any], run: dict[str, Any]) -> str:
    warmup = (
        f"{run['warmup_s']} s wrk warm-up per system (not recorded), then"
        if run.get("warmup_s")
        else "no warm-up (smoke run);"
    )
    lines = [
        f"Every system gets the identical load, one system at a time: {warmup} each scenario"
        f" for {run['duration_s']} s on an emptied Redis (FLUSHALL before each). Every request"
        " POSTs the InboxComponents message.received seed with a fresh idempotency key (or"
        " each key 5 times: `post_repeat_key.lua`), padded to the scenario's size with a"
        " `padding` string at the start of `data` (WRK_PAD_TO). `vs X` columns: req/s"
        " relative to system X in the same scenario. `CPU server/load/other`: the share of a"
        " core the server process used, how busy the load CPUs (wrk, Redis) were, and the"
        " share of a core used by processes outside the run (other tests, another"
        f" benchmark; above {OTHER_CPU_LIMIT:.0%} the row is flagged). A server well under"
        " 100% while the load CPUs are full was not the limit.",
    ]
    for name, s in scenarios.items():
        env = f"WRK_PAD_TO={s['payload']} " if s.get("payload") else ""
        if s.get("rate_of"):
            env += f"WRK_RATE=<{s['rate_share']:g} x {s['rate_of']} req/s> "
            env += f"WRK_THREADS={s['threads']} "
        about = f": {s['about']}" if s.get("about") else ""
        lines.append(
            f"- {name}: `{env}wrk -t{s['threads']} -c{s['connections']} -d{run['duration_s']}s"
            f" --latency -s benchmarks/wrk/{s['script']}`{about}"
        )
    return "\n".join(lines)


def _system_notes(systems: dict[str, Any]) -> list[str]:
    notes = []
    for name, system in systems.items():
        ready = system.get("ready_s")
        started = "" if ready is None else f" (ready {ready:.2f} s after exec)"
        notes.append(f"- {name}: {system['description']}{started}")
    return notes


def _machine_note(m: dict[str, Any]) -> str:
    packages = ", ".join(f"{name} {version}" for name, version in m["packages"].items())
    busy = m.get("busy_before")
    idle = "" if busy is None else f" The CPUs were {busy:.0%} busy in the second before the run."
    return (
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), Linux {m['kernel']}, Python {m['python']},"
        f" Redis {m['redis']}, wrk {m['wrk']}; {packages}.{idle}"
    )


DELIVERY_BASELINE = "post"  # the bare client's row: what every delivery row is compared to

_DELIVERY_HEADER = (
    "| system | scenario | events | seconds | events/s | vs bare client | drain s"
    " | acked req/s | CPU sender/sink/load/other | status |\n"
    "|---|---|--:|--:|--:|--:|--:|--:|--:|---|"
)


def _delivery_rows(results: dict[str, Any]) -> list[str]:
    base = results.get(DELIVERY_BASELINE, {}).get("rps")
    return [_delivery_row(scenario, r, base) for scenario, r in results.items()]


def _delivery_row(scenario: str, r: dict[str, Any], base: float | None) -> str:
    status = "ok" if not r["flags"] else ("✗ " if r["error"] else "⚠ ") + "; ".join(r["flags"])
    rps = r["rps"]
    cells = [
        _number(r["events"]),
        "—" if r["seconds"] is None else f"{r['seconds']:.2f}",
        _number(rps),
        f"{rps / base:.2f}x" if rps is not None and base else "—",
        "—" if r["drain_s"] is None else f"{r['drain_s']:.2f}",
        _number(r["acked_rps"]),
        " / ".join(_percent(r.get(k)) for k in ("sender_cpu", "sink_cpu", "load_cpu", "other_cpu")),
    ]
    return _row(r["system"], scenario, cells, status)


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _delivery_note(delivery: dict[str, Any]) -> str:
    events, conns = f"{delivery['events']:,}", delivery["connections"]
    pad = f"WRK_PAD_TO={delivery['e2e_payload']} " if delivery.get("e2e_payload") else ""
    lines = [
        "Every delivery is the InboxComponents message.received seed as the gateway sends it"
        " (CloudEvents binary, same bytes), POSTed to `benchmarks/sink_server.py`, which"
        " answers 200 and counts; `events` is the sink's count. `vs bare client`: events/s"
        " relative to the `post` row of the same run. `CPU sender/sink/load/other`: share of a"
        " core used by the sender (bare client or gateway), by the sink, how busy the load"
        " CPUs were (sink, Redis, wrk), and the share of a core used by processes outside"
        " the run (drain and e2e only).",
        f"- post: `python -m benchmarks.bare_client --requests {delivery['events']}"
        f" --connections {conns}`: {conns} keep-alive connections POST one prebuilt request"
        " back to back; seconds from the first send to the last answer (connecting excluded).",
        f"- drain: {events} events queued beforehand through the gateway's own admit script,"
        " then the gateway is started with the forwarder on; seconds from `/readyz` answering"
        f" 200 until the sink has counted {events} and the queue is empty (XLEN 0,"
        " nothing pending or retrying). The forwarder starts a moment before `/readyz`"
        " answers, so a few deliveries may precede the clock (`sink_at_ready` in the JSON).",
        f"- e2e: the gateway with the forwarder on under `{pad}wrk -t{delivery['wrk_threads']}"
        f" -c{conns} -d{delivery['duration_s']}s -s benchmarks/wrk/post_fresh_key.lua`"
        " (after a drained 1 s warm-up); `acked req/s`: wrk's 2xx per second;"
        " `drain s`: from wrk's exit until the queue is empty; seconds = wrk's duration +"
        " drain; events/s = sink count / seconds. The sink may count up to one event per"
        " connection more than wrk acked: requests in flight when wrk stops are admitted,"
        " but wrk no longer counts their answers. `at_wrk_exit` in the JSON: the backlog"
        " left when the load stopped.",
    ]
    if delivery.get("pinning"):
        lines.append(f"- pinning: {delivery['pinning']}")
    return "\n".join(lines)
