"""A run's JSON document (benchmarks/document.py) as the Markdown report: the targets,
the ingest and delivery tables, the delivery rounds, pairs, workers and footprint
sections, then how they were produced. Pure: no I/O here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks import drain_rounds, pairs_report, process_report
from benchmarks.outcomes import OTHER_CPU_LIMIT, STEAL_LIMIT

# The ratio columns of the ingest table: req/s relative to these systems, same scenario.
RATIO_BASELINES = (("bare", "vs bare"), ("bare_admit", "vs bare+admit"), ("fastapi", "vs FastAPI"))


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
            met += " ⚠ flagged runs (their status says why)"
        cells = [row["measure"], row["target"], measured, met, row["basis"]]
        out.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return out


# -- the ingest table -------------------------------------------------------------------

# Numbers right-aligned; the last column says whether the row is a measurement at all.
_HEADER = (
    "| system | scenario | req/s | "
    + " | ".join(label for _, label in RATIO_BASELINES)
    + " | p50 µs | p90 µs | p99 µs | non-2xx | errors | CPU server/load/other/steal | status |\n"
    + "|---|---|--:|"
    + "--:|" * len(RATIO_BASELINES)
    + "--:|--:|--:|--:|--:|--:|---|"
)
_EMPTY = [""] * (7 + len(RATIO_BASELINES))


_BUILDS = {
    "mypyc": "compiled with mypyc (the modules of mypyc-modules.txt), as the container image"
    " ships it",
    "interpreted": "interpreted (`--build interpreted`)",
}


def markdown(doc: dict[str, Any], chart: str | None = None) -> str:
    """The report: the targets, the tables, then how they were produced.

    `chart`: the PNG's file name, relative to where this Markdown is written."""
    run, machine = doc["run"], doc["machine"]
    parts = [f"Run {run['started']}: `{run['command']}`"]
    if run.get("commit"):
        dirty = run.get("uncommitted") or []
        changes = f" plus uncommitted changes to {', '.join(dirty)}" if dirty else ""
        parts[0] += f", on commit {run['commit']}{changes}."
    if run.get("gateway_build"):  # runs before --build recorded nothing
        parts.append(
            f"The gateway measured: {_BUILDS.get(run['gateway_build'], run['gateway_build'])}."
        )
    parts.append(f"Pinning: {machine['pinning']['note']}.")
    if chart:
        parts.append(f"![req/s and p50/p99 ack latency per system]({chart})")
    groups = [doc.get(name) for name in ("pairs", "workers", "footprint")]
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
    if delivery.get("rounds"):  # runs from before the rounds have none
        parts += drain_rounds.rounds_section(delivery)
    if doc.get("pairs"):
        parts += pairs_report.pairs_section(doc["pairs"])
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
    shares = ("server_cpu", "load_cpu", "other_cpu", "steal_cpu")
    cells.append(" / ".join(_percent(s.get(k)) for k in shares))
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
        " relative to system X in the same scenario. `CPU server/load/other/steal`: the share"
        " of a core the server process used, how busy the load CPUs (wrk, Redis) were, the"
        " share of a core used by processes outside the run (other tests, another"
        f" benchmark; above {OTHER_CPU_LIMIT:.0%} the row is flagged), and the share of all"
        " CPUs' time the hypervisor gave to other guests (steal, from /proc/stat; above"
        f" {STEAL_LIMIT:.0%} flagged: a shared virtual machine was slowed by its neighbours)."
        " A server well under 100% while the load CPUs are full was not the limit.",
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
    steal = m.get("steal")  # absent from runs before it was recorded
    if steal is not None:
        idle += f" Over the run the hypervisor took {steal:.1%} of the CPUs' time (steal)."
    return (
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), Linux {m['kernel']}, Python {m['python']},"
        f" Redis {m['redis']}, wrk {m['wrk']}; {packages}.{idle}"
    )


DELIVERY_BASELINE = "post"  # the bare client's row: what every delivery row is compared to

_DELIVERY_HEADER = (
    "| system | scenario | events | seconds | events/s | vs bare client | drain s"
    " | acked req/s | CPU sender/sink/load/other/steal | status |\n"
    "|---|---|--:|--:|--:|--:|--:|--:|--:|---|"
)


_DELIVERY_SHARES = ("sender_cpu", "sink_cpu", "load_cpu", "other_cpu", "steal_cpu")


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
        " / ".join(_percent(r.get(k)) for k in _DELIVERY_SHARES),
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
        " relative to the `post` row of the same run. `CPU sender/sink/load/other/steal`:"
        " share of a core used by the sender (bare client or gateway), by the sink, how busy"
        " the load CPUs were (sink, Redis, wrk), the share of a core used by processes"
        " outside the run, and the hypervisor's steal (drain and e2e only; as above).",
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
