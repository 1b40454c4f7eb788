"""The gateway's top frames under load, from py-spy: ingest and drain.

Runs benchmarks/cpu_per_request.sh (ingest only, wrk -c64) and
benchmarks/cpu_per_delivery.sh (a 100k-event drain into the sink) with py-spy
recording the pinned gateway, and prints a Markdown report: each run's CPU µs per
request or event (from /proc), then the frames with the most samples, by function
(line numbers merged), self and inclusive.

    python -m benchmarks.profile [--top 25] [--out benchmarks/out/profile.md]

Needs py-spy (pip install py-spy), wrk and redis-server. py-spy counts a sample
whenever the thread is not idle in epoll, so a socket write that wakes a peer on
the other CPU is counted for as long as the write takes, CPU or not: read the
shares as where the wall time goes, and /proc's µs as what the CPU did.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = (
    ("ingest", "benchmarks/cpu_per_request.sh"),
    ("drain", "benchmarks/cpu_per_delivery.sh"),
)
_LINE = re.compile(r":\d+\)")


@dataclass(frozen=True, slots=True)
class Profile:
    samples: int
    self_time: Counter[str]
    inclusive: Counter[str]


def read_collapsed(text: str) -> Profile:
    """py-spy's raw format: one 'frame;frame;...;frame count' line per stack."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        self_time[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return Profile(total, self_time, inclusive)


def table(title: str, counts: Counter[str], total: int, top: int) -> list[str]:
    rows = [f"| {title} | % of samples |", "|---|--:|"]
    for frame, n in counts.most_common(top):
        rows.append(f"| `{frame or '(unnamed)'}` | {100 * n / total:.1f}% |")
    return rows


def report(name: str, script: str, measured: str, profile: Profile, top: int) -> list[str]:
    # Inclusive shares of the loop's own frames (Runner.run, cli) are ~100%: skip them.
    ours = Counter(
        {f: n for f, n in profile.inclusive.items() if "gateway/" in f and "cli.py" not in f}
    )
    return [
        f"### {name}",
        "",
        f"`{script}` under py-spy (250 Hz): `{measured}`; {profile.samples:,} samples.",
        "",
        *table("self (the frame itself)", profile.self_time, profile.samples, top),
        "",
        *table("inclusive, gateway/ frames", ours, profile.samples, top),
        "",
    ]


def run(script: str, label: str, collapsed: Path) -> str:
    env = {"PROFILE": str(collapsed), "PROFILE_FORMAT": "raw"}
    done = subprocess.run(
        ["bash", script, label],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    last = done.stdout.strip().splitlines()[-1:] or ["(no output)"]
    if done.returncode != 0 or not collapsed.is_file():
        raise SystemExit(f"{script} failed: {done.stderr.strip() or last[0]}")
    return last[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=25, help="frames per table (default 25)")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    missing = [t for t in ("wrk", "redis-server") if shutil.which(t) is None]
    if shutil.which("py-spy", path=str(REPO / ".venv/bin")) is None:
        missing.append("py-spy (pip install py-spy)")
    if missing:
        print(f"missing: {', '.join(missing)}", file=sys.stderr)
        return 2
    lines = ["## Profile (py-spy, `python -m benchmarks.profile`)", ""]
    with tempfile.TemporaryDirectory() as tmp:
        for name, script in RUNS:
            collapsed = Path(tmp) / f"{name}.txt"
            measured = run(script, "profile", collapsed)
            profile = read_collapsed(collapsed.read_text())
            lines += report(name, script, measured, profile, args.top)
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
