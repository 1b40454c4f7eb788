"""What a run found, as a JSON document and a Markdown table. Pure: no I/O here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.wrkout import WrkResult

BASELINE = "bare"


@dataclass(frozen=True, slots=True)
class Scenario:
    """One load shape. `threads=None`: as many wrk threads as the load cores support."""

    name: str
    connections: int
    threads: int | None
    script: str = "post_fresh_key.lua"


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
        return flags


@dataclass(slots=True)
class SystemOutcome:
    name: str
    description: str
    argv: list[str] = field(default_factory=list)
    scenarios: list[ScenarioOutcome] = field(default_factory=list)
    error: str | None = None
    # Keys in Redis after the run: for a system that stores, a cross-check that its
    # 200s were admitted events (about one dedup key per request with fresh keys).
    store_keys: int | None = None

    @property
    def usable(self) -> bool:
        """Started, stayed up, and every scenario produced successful requests."""
        return self.error is None and all(s.usable for s in self.scenarios)


def scenario_json(outcome: ScenarioOutcome) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "server_cpu": outcome.server_cpu,
        "load_cpu": outcome.load_cpu,
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
        return ([f"failed: {self.error}"] if self.error else []) + self.problems


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
) -> dict[str, Any]:
    return {
        "run": run,
        "machine": machine,
        "scenarios": {
            s.name: {"connections": s.connections, "threads": s.threads, "script": s.script}
            for s in scenarios
        },
        "systems": {
            o.name: {
                "description": o.description,
                "argv": o.argv,
                "usable": o.usable,
                "error": o.error,
                "store_keys": o.store_keys,
                "scenarios": {s.scenario: scenario_json(s) for s in o.scenarios},
            }
            for o in outcomes
        },
        "delivery": {
            **(delivery_settings or {}),
            "results": {o.scenario: delivery_json(o) for o in delivery},
        },
    }


# Numbers right-aligned; the last column says whether the row is a measurement at all.
_HEADER = (
    "| system | scenario | req/s | vs bare | p50 µs | p90 µs | p99 µs | non-2xx | errors"
    " | CPU server/load | status |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|"
)


def markdown(doc: dict[str, Any]) -> str:
    """The report: the table first, then how it was produced."""
    run, machine = doc["run"], doc["machine"]
    parts = [f"Run {run['started']}: `{run['command']}`"]
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
    parts.append(_machine_note(machine))
    return "\n\n".join(parts) + "\n"


def _rows(systems: dict[str, Any]) -> list[str]:
    baseline = systems.get(BASELINE, {}).get("scenarios", {})
    rows = []
    for name, system in systems.items():
        if system["error"] and not system["scenarios"]:
            rows.append(_row(name, "—", [""] * 8, f"✗ failed to start: {_first_line(system)}"))
        for scenario, s in system["scenarios"].items():
            rows.append(_scenario_row(name, scenario, s, baseline.get(scenario)))
        if system["error"] and system["scenarios"]:
            rows.append(_row(name, "—", [""] * 8, f"✗ {_first_line(system)}"))
    return rows


def _scenario_row(
    system: str, scenario: str, s: dict[str, Any], base: dict[str, Any] | None
) -> str:
    status = "ok" if not s["flags"] else "⚠ " + "; ".join(s["flags"])
    if "rps" not in s:
        return _row(system, scenario, [""] * 8, "✗ " + "; ".join(s["flags"]))
    ratio = f"{s['rps'] / base['rps']:.2f}x" if base and base.get("rps") else "—"
    cells = [f"{s['rps']:,.0f}", ratio]
    cells += [f"{s[k]:,.0f}" for k in ("p50_us", "p90_us", "p99_us")]
    cells += [f"{s['non2xx']:,}", f"{s['errors']:,}"]
    cells.append(f"{_percent(s['server_cpu'])} / {_percent(s['load_cpu'])}")
    return _row(system, scenario, cells, status)


def _percent(share: float | None) -> str:
    return "—" if share is None else f"{share:.0%}"


def _row(system: str, scenario: str, cells: list[str], status: str) -> str:
    return "| " + " | ".join([system, scenario, *cells, status.replace("|", "/")]) + " |"


def _first_line(system: dict[str, Any]) -> str:
    return str(system["error"]).splitlines()[0][:160]


def _scenarios_note(scenarios: dict[str, Any], run: dict[str, Any]) -> str:
    lines = [
        f"Each scenario: {run['warmup_s']} s wrk warm-up (not recorded), then {run['duration_s']} s"
        " measured; every request POSTs the InboxComponents message.received seed with a fresh"
        " idempotency key. `vs bare` is req/s relative to `bare` in the same scenario;"
        " `CPU server/load`: the share of a core the server process used, and how busy the"
        " load CPUs (wrk, Redis) were. A server well under 100% while the load CPUs are full"
        " was not the limit; a value off its usual level means something else competed.",
    ]
    for name, s in scenarios.items():
        lines.append(
            f"- {name}: `wrk -t{s['threads']} -c{s['connections']} -d{run['duration_s']}s"
            f" --latency -s benchmarks/wrk/{s['script']}`"
        )
    return "\n".join(lines)


def _system_notes(systems: dict[str, Any]) -> list[str]:
    return [f"- {name}: {system['description']}" for name, system in systems.items()]


def _machine_note(m: dict[str, Any]) -> str:
    packages = ", ".join(f"{name} {version}" for name, version in m["packages"].items())
    return (
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), Linux {m['kernel']}, Python {m['python']},"
        f" Redis {m['redis']}, wrk {m['wrk']}; {packages}.\n"
        f"Pinning: {m['pinning']['note']}."
    )


DELIVERY_BASELINE = "post"  # the bare client's row: what every delivery row is compared to

_DELIVERY_HEADER = (
    "| system | scenario | events | seconds | events/s | vs bare client | drain s"
    " | acked req/s | CPU sender/sink/load | status |\n|---|---|--:|--:|--:|--:|--:|--:|--:|---|"
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
        " / ".join(_percent(r[k]) for k in ("sender_cpu", "sink_cpu", "load_cpu")),
    ]
    return _row(r["system"], scenario, cells, status)


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _delivery_note(delivery: dict[str, Any]) -> str:
    events, conns = f"{delivery['events']:,}", delivery["connections"]
    lines = [
        "Every delivery is the InboxComponents message.received seed as the gateway sends it"
        " (CloudEvents binary, same bytes), POSTed to `benchmarks/sink_server.py`, which"
        " answers 200 and counts; `events` is the sink's count. `vs bare client`: events/s"
        " relative to the `post` row of the same run. `CPU sender/sink/load`: share of a core"
        " used by the sender (bare client or gateway), by the sink, and how busy the load"
        " CPUs were (sink, Redis, wrk).",
        f"- post: `python -m benchmarks.bare_client --requests {delivery['events']}"
        f" --connections {conns}`: {conns} keep-alive connections POST one prebuilt request"
        " back to back; seconds from the first send to the last answer (connecting excluded).",
        f"- drain: {events} events queued beforehand through the gateway's own admit script,"
        " then the gateway is started with the forwarder on; seconds from `/readyz` answering"
        f" 200 until the sink has counted {events} and the queue is empty (XLEN 0,"
        " nothing pending or retrying). The forwarder starts a moment before `/readyz`"
        " answers, so a few deliveries may precede the clock (`sink_at_ready` in the JSON).",
        f"- e2e: the gateway with the forwarder on under `wrk -t{delivery['wrk_threads']}"
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
