"""Where a run's report goes: <out>/<timestamp>.json, .md and .png (the chart, when
matplotlib is installed), and for a full run benchmarks/RESULTS.md and RESULTS.png too,
with benchmarks/PROFILE.md carried into RESULTS.md. `republish`: RESULTS.md again from a
recorded full run's JSON, measuring nothing.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from benchmarks import chart, report
from benchmarks.targets import targets

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
RESULTS_CHART = HERE / "RESULTS.png"
PROFILE = HERE / "PROFILE.md"


def republish(recorded: Path) -> None:
    """RESULTS.md again from a recorded full run, e.g. after benchmarks/PROFILE.md changed.
    The targets are derived again from the recorded measurements, by today's rules."""
    doc = json.loads(recorded.read_text())
    doc["targets"] = targets(doc)
    publish(doc, recorded.parent, results=True)


def publish(doc: dict[str, Any], out_dir: Path, *, results: bool) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = doc["run"]["stamp"]
    png = out_dir / f"{stamp}.png"
    try:
        chart.render(doc, png)
        doc["chart"] = png.name
    except ImportError as exc:  # matplotlib is in the bench (and test) extra
        doc["chart"] = None
        print(f"no chart: {exc} (pip install -e '.[bench]')", file=sys.stderr, flush=True)
    text = report.markdown(doc, chart=doc["chart"])
    print("\n" + text, flush=True)
    written = [out_dir / f"{stamp}.json", out_dir / f"{stamp}.md"]
    written[0].write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    written[1].write_text(text)
    if doc["chart"]:
        written.append(png)
    if results:
        chart_name = None
        if doc["chart"]:
            shutil.copyfile(png, RESULTS_CHART)
            chart_name = RESULTS_CHART.name
            written.append(RESULTS_CHART)
        RESULTS.write_text(
            "# Benchmark results\n\nThe latest full run, written by `benchmarks/run.py`;"
            " rerun the command below to refresh it.\n\n"
            + report.markdown(doc, chart=chart_name)
            + _profile_section()
        )
        written.append(RESULTS)
    for path in written:
        print(f"wrote {path}", flush=True)


def _profile_section() -> str:
    """benchmarks/PROFILE.md (the latest `python -m benchmarks.profile` and what was
    changed because of it), carried into every RESULTS.md."""
    if not PROFILE.is_file():
        return ""
    return "\n" + PROFILE.read_text()
