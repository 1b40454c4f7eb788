"""The run as one PNG: acked req/s per system, and p50/p99 ack latency per system.

matplotlib (the `bench` extra) on its headless Agg backend; `render` raises
ImportError when it is not installed, and the harness then writes no chart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# (scenario, label) of each panel's bar groups, in the order drawn.
THROUGHPUT_BARS = (
    ("throughput", "fresh keys, 1 KiB"),
    ("duplicates", "each key 5x, 1 KiB"),
    ("payload_64k", "fresh keys, 64 KiB"),
)
LATENCY_BARS = (
    ("latency_c1", "p50_us", "p50, 1 connection"),
    ("latency_c1", "p99_us", "p99, 1 connection"),
    ("latency_half", "p50_us", "p50, half max rate"),
    ("latency_half", "p99_us", "p99, half max rate"),
)


def render(doc: dict[str, Any], path: Path) -> None:
    """Write the chart of `doc` (a `document.document`) to `path` as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    systems = [name for name, s in doc["systems"].items() if s["scenarios"]]
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(14, 0.9 * len(systems) + 3.2))
    try:
        _bars(left, systems, doc, [(s, "rps", label) for s, label in THROUGHPUT_BARS])
        left.set_title("acked req/s, 64 connections (more is better)")
        left.set_xlabel("requests per second (log scale)")
        _bars(right, systems, doc, list(LATENCY_BARS), scale=1 / 1000)
        right.set_title("ack latency (less is better)")
        right.set_xlabel("milliseconds (log scale)")
        right.axvline(1.0, color="grey", linestyle="--", linewidth=1)
        right.text(1.0, -0.6, " 1 ms", color="grey", va="center", fontsize=8)
        run, machine = doc["run"], doc["machine"]
        figure.suptitle(f"{run['command']}  ({run['started']}; {_where(machine)})", fontsize=9)
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    finally:
        pyplot.close(figure)


def _bars(
    axes: Any,
    systems: list[str],
    doc: dict[str, Any],
    series: list[tuple[str, str, str]],
    scale: float = 1.0,
) -> None:
    """Horizontal grouped bars: one group per system, one bar per series, values labelled."""
    height = 0.8 / len(series)
    for i, (scenario, key, label) in enumerate(series):
        values = [_value(doc, system, scenario, key) for system in systems]
        positions = [n + (i - (len(series) - 1) / 2) * height for n in range(len(systems))]
        drawn = [v * scale if v else 0.0 for v in values]
        bars = axes.barh(positions, drawn, height=height, label=label)
        for bar, value in zip(bars, drawn, strict=True):
            if value:
                text = f"{value:,.0f}" if scale == 1.0 else f"{value:.2f}"
                axes.text(value, bar.get_y() + height / 2, " " + text, va="center", fontsize=7)
    axes.set_xscale("log")
    axes.set_yticks(range(len(systems)), systems)
    axes.invert_yaxis()
    axes.legend(fontsize=8, loc="lower right")
    axes.grid(axis="x", which="both", alpha=0.3)
    axes.margins(x=0.25)


def _value(doc: dict[str, Any], system: str, scenario: str, key: str) -> float | None:
    found = doc["systems"][system]["scenarios"].get(scenario, {}).get(key)
    return None if found is None else float(found)


def _where(machine: dict[str, Any]) -> str:
    pinning = machine["pinning"]
    if not pinning["pinned"]:
        return f"{machine['nproc']} CPUs, {pinning['note']}"
    server = ",".join(map(str, pinning["server_cpus"]))
    load = ",".join(map(str, pinning["load_cpus"]))
    return f"{machine['nproc']} CPUs: server under test on CPU {server}, wrk + Redis on CPU {load}"
