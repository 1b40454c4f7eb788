"""What the workers and footprint groups found: their facts, their sections of the
report and their target rows. Pure: no I/O here.

benchmarks/workers.py and benchmarks/footprint.py measure; report.py places the sections
this module renders, and targets.py turns each `found` dict into a row of the targets
table. It imports neither workers.py nor footprint.py: they import the harness, and what
renders the report stays free of it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

MIB = 1024 * 1024
RSS_LIMIT_BYTES = 80_000_000  # the "≤ 80 MB", in decimal megabytes
# RSS that moves by less than this between ~200k and the last round is no growth: the
# allocator's arenas step by a few hundred KiB (+0.3 MiB in two steps over 800k events
# in the footprint run README quotes), while a leak of 2 bytes per event would exceed it.
NO_GROWTH_MIB = 1.0
TARGET_EVENTS = 1_000_000  # the "RSS after 1M events"
LOW_SHARE = 5  # the growth is taken from the sample nearest events / 5 (~200k of 1M)

# -- workers: 1 vs 2 ---------------------------------------------------------------------


def pair_ratios(runs: Sequence[dict[str, Any]]) -> list[float | None]:
    """req/s of `workers: 2` over `workers: 1`, per interleaved pair (None: a failed run)."""
    rps: dict[tuple[int, int], float | None] = {
        (r["pair"], r["workers"]): r.get("rps") for r in runs
    }
    ratios = []
    for pair in sorted({r["pair"] for r in runs}):
        one, two = rps.get((pair, 1)), rps.get((pair, 2))
        ratios.append(round(two / one, 3) if one and two else None)
    return ratios


def workers_summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per setting the range of req/s, cores and CPU µs per request; the pair ratios."""
    settings = {}
    for workers in sorted({r["workers"] for r in runs}):
        mine = [r for r in runs if r["workers"] == workers]
        settings[str(workers)] = {
            key: _range(r.get(key) for r in mine) for key in ("rps", "cores", "cpu_us_per_request")
        } | {"runs": len(mine)}
    return {"settings": settings, "ratios": pair_ratios(runs)}


def _range(values: Any) -> list[float] | None:
    found = [v for v in values if v is not None]
    return [min(found), max(found)] if found else None


def workers_target(w: dict[str, Any]) -> dict[str, Any]:
    """The "2 workers vs 1" row: reported, not judged; the range of the pair ratios."""
    ratios = [r for r in w["summary"]["ratios"] if r is not None]
    if not ratios:
        return _failed(w, "no pair of runs measured both settings")
    low, high = min(ratios), max(ratios)
    shown = f"{low:.2f}x" if low == high else f"{low:.2f}-{high:.2f}x"
    settings = w["summary"]["settings"]
    basis = (
        f"per interleaved pair ({len(ratios)} of {w['pairs']}), on {w['cpus']} CPUs, nothing"
        f" pinned: workers: 1 {_span(settings['1']['rps'])}, workers: 2"
        f' {_span(settings["2"]["rps"])} req/s ("2 workers vs 1" below)'
    )
    value = statistics.median(ratios)
    return _found(value, None, basis, f"{shown} per pair", not w["flags"])


def workers_section(w: dict[str, Any]) -> list[str]:
    title = "## 2 workers vs 1 (SO_REUSEPORT)"
    if w.get("error"):
        return [title, f"✗ failed: {w['error']}"]
    header = (
        f"| gateway | req/s ({_count(w['pairs'], 'run')}) | gateway CPU, cores"
        " | CPU per request, µs | status |\n|---|--:|--:|--:|---|"
    )
    rows = []
    for workers, s in w["summary"]["settings"].items():
        flags = [f for r in w["runs"] if str(r["workers"]) == workers for f in r["flags"]]
        status = "ok" if not flags else "⚠ " + "; ".join(flags)
        cells = [f"`workers: {workers}`", _span(s["rps"]), _span(s["cores"], ".2f")]
        cells += [_span(s["cpu_us_per_request"], ".1f"), status.replace("|", "/")]
        rows.append("| " + " | ".join(cells) + " |")
    ratios = ", ".join("—" if r is None else f"{r:.2f}x" for r in w["summary"]["ratios"])
    return [title, "\n".join([header, *rows]), _workers_note(w, ratios)]


def _workers_note(w: dict[str, Any], ratios: str) -> str:
    warmup = f"a {w['warmup_s']} s wrk warm-up, then" if w["warmup_s"] else "no warm-up (smoke);"
    return (
        f"2 workers vs 1, per interleaved pair: {ratios}. The gateway as the ingest `gateway`"
        " system (forwarder off) with GATEWAY_WORKERS=1 and =2 in turn,"
        f" {_count(w['pairs'], 'pair')} (1, 2, 1, 2, ...); each run a fresh gateway on an"
        f" emptied Redis, {warmup} `{w['wrk']}`. {w['pinning']} CPU: the gateway's processes"
        " (the supervisor and its workers, or the one process) from /proc, utime + stime with"
        " reaped children's; cores = CPU seconds over the wall time of the load, CPU per"
        " request = CPU seconds over wrk's requests."
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _span(pair: list[float] | None, spec: str = ",.0f") -> str:
    if pair is None:
        return "—"
    low, high = (format(v, spec) for v in pair)
    return low if low == high else f"{low} - {high}"


# -- footprint: start-up and RSS -----------------------------------------------------------


def footprint_facts(
    starts: Sequence[float],
    samples: Sequence[tuple[int, float]],
    events: int,
    listening: Sequence[float],
    idle: dict[str, float],
) -> dict[str, Any]:
    """exec -> /readyz and exec -> the public port listening over the starts; the idle
    gateway's CPU and Redis commands (benchmarks.footprint.idle_cost); RSS idle, near
    events / 5, and at the last round.

    The low point is a round before the last, never the idle sample: growth from idle
    is the heap warming up, not what the target asks."""
    rounds = samples[1:-1] or samples[1:] or samples
    low = min(rounds, key=lambda s: abs(s[0] - events // LOW_SHARE))
    high = samples[-1]
    return {
        "events": events,
        "starts_s": [round(s, 4) for s in starts],
        "ready_s": _spread(starts),
        "listening_s": _spread(listening),
        "idle": idle,
        "samples": [[n, round(rss, 3)] for n, rss in samples],
        "rss_idle_mib": round(samples[0][1], 3),
        "rss_low": {"events": low[0], "mib": round(low[1], 3)},
        "rss_high": {"events": high[0], "mib": round(high[1], 3)},
        "growth_mib": round(high[1] - low[1], 3),
    }


def _spread(seconds: Sequence[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(seconds), 4),
        "min": round(min(seconds), 4),
        "max": round(max(seconds), 4),
    }


def footprint_table(f: dict[str, Any]) -> list[str]:
    """The measures as a Markdown table (FOOTPRINT.md and the run's report)."""
    ready, low, high = f["ready_s"], f["rss_low"], f["rss_high"]
    count = len(f["starts_s"])
    rows = ["| measure | value |", "|---|--:|"]
    listening = f.get("listening_s")  # absent from runs before the port was bound first
    if listening is not None:
        rows.append(
            f"| exec → public port listening, median (min / max) | {listening['median']:.3f} s"
            f" ({listening['min']:.3f} / {listening['max']:.3f}) |"
        )
    rows += [
        f"| exec → /readyz 200, median of {count} | {ready['median']:.3f} s |",
        f"| exec → /readyz 200, min / max | {ready['min']:.3f} / {ready['max']:.3f} s |",
    ]
    idle = f.get("idle")  # absent from runs before 2026-12-08
    if idle:
        per_s = idle["seconds"]
        rows.append(
            f"| CPU idle (ready, nothing sent, {per_s:g} s), share of a core"
            f" | {idle['cpu_s'] / per_s:.2%} |"
        )
        if "redis_commands" in idle:  # none on the SQLite store
            per_second = idle["redis_commands"] / per_s
            rows.append(f"| Redis commands while idle, per second | {per_second:.1f} |")
    return [
        *rows,
        f"| RSS idle (ready, no events) | {f['rss_idle_mib']:.1f} MiB |",
        f"| RSS after {low['events']:,} events | {low['mib']:.1f} MiB |",
        f"| RSS after {high['events']:,} events | {high['mib']:.1f} MiB |",
        f"| growth from {low['events']:,} to {high['events']:,} events"
        f" | {f['growth_mib']:+.1f} MiB |",
    ]


def footprint_rounds(f: dict[str, Any]) -> list[str]:
    """Every sample, so the one the RSS rows name can be read in its sequence."""
    return [
        f"RSS after each {f['round_s']} s round of `wrk -t1 -c64` (forwarder on,"
        " delivering to the sink):",
        "",
        "| events admitted | RSS MiB |",
        "|--:|--:|",
        *(f"| {n:,} | {rss:.1f} |" for n, rss in f["samples"]),
    ]


def footprint_section(f: dict[str, Any]) -> list[str]:
    if f.get("error"):
        return ["## Footprint", f"✗ failed: {f['error']}"]
    wrk = f["wrk"]
    smoke = f" Smoke: {f['events']:,} events, not {TARGET_EVENTS:,}." if f["smoke"] else ""
    note = (
        f"{len(f['starts_s'])} starts of the gateway (Redis up): seconds from exec until"
        " its public port first accepts a connection and until /readyz first answers 200,"
        " each polled every 2 ms. Then one gateway with its forwarder"
        f" on, delivering to the sink, under `{f['wrk_command']}` rounds until"
        f" {f['events']:,} events were admitted, its VmRSS read after each round (all of them"
        f" in the JSON); {wrk['requests']:,} requests, {wrk['non2xx']:,} non-2xx,"
        f" {wrk['errors']:,} socket errors. {f['pinning']}{smoke}"
    )
    return ["## Footprint", "\n".join(footprint_table(f)), note, "\n".join(footprint_rounds(f))]


def ready_target(f: dict[str, Any]) -> dict[str, Any]:
    """exec -> /readyz 200: the median of the footprint's starts."""
    if f.get("error"):
        return _failed(f, "the footprint failed")
    ready = f["ready_s"]
    basis = (
        f"median of {len(f['starts_s'])} starts ({ready['min']:.3f} to {ready['max']:.3f} s),"
        " polled every 2 ms (footprint below)"
    )
    return _found(ready["median"], ready["median"] <= 1.0, basis, None, not f["flags"])


def rss_target(f: dict[str, Any]) -> dict[str, Any]:
    """RSS after the last round, and its growth since ~1/5 of the events; judged only
    when the run reached the target's 1M events."""
    if f.get("error"):
        return _failed(f, "the footprint failed")
    low, high, growth = f["rss_low"], f["rss_high"], f["growth_mib"]
    shown = (
        f"{high['mib']:.1f} MiB, {growth:+.1f} MiB from {low['events']:,}"
        f" to {high['events']:,} events"
    )
    basis = (
        "the gateway, forwarder on, delivering to the sink (footprint below); growth under"
        f" {NO_GROWTH_MIB:g} MiB counts as none"
    )
    met = None
    if high["events"] >= TARGET_EVENTS:
        met = high["mib"] * MIB <= RSS_LIMIT_BYTES and growth < NO_GROWTH_MIB
    else:
        why = "smoke" if f["smoke"] else "partial run"
        basis = f"{why}: {high['events']:,} events, not {TARGET_EVENTS:,}, so no verdict; {basis}"
    return _found(high["mib"], met, basis, shown, not f["flags"])


# -- shared ----------------------------------------------------------------------------------


def _found(
    value: float | None, met: bool | None, basis: str, shown: str | None, clean: bool
) -> dict[str, Any]:
    return {"value": value, "met": met, "basis": basis, "shown": shown, "clean": clean}


def _failed(group: dict[str, Any], why: str) -> dict[str, Any]:
    detail = group.get("error") or "; ".join(group.get("flags", []))
    return _found(None, None, f"{why}: {detail}" if detail else why, None, False)
