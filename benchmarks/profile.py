"""The gateway's top frames under load, from py-spy: ingest and drain.

Runs benchmarks/cpu_per_request.sh (ingest only, wrk -c64) and
benchmarks/cpu_per_delivery.sh (a 100k-event drain into the sink) with py-spy
recording the pinned gateway, and prints a Markdown report: each run's CPU µs per
request or event (from /proc), then the frames with the most samples, by function
(line numbers merged), self and inclusive.

    python -m benchmarks.profile [--build compiled|interpreted] [--top 25] [--out FILE]

--build compiled (the default, what the container image ships) profiles a copy of the
checkout with mypyc-modules.txt compiled (./dev.sh compiled-copy). Its compiled functions
are C functions (CPyDef_module___Class___method), not Python frames, so each run is made
twice: under Linux perf (cpu-clock, the process's own CPU by native symbol, self only) and
under py-spy, whose Python frames are then exactly what is still interpreted. (py-spy
--native pauses the process for every sample: 13k req/s fell to 479 under it.)

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

from benchmarks.run import gateway_build
from benchmarks.systems import gateway_root

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


_PERF_ROW = re.compile(r"^\s*[0-9.]+%\s+(\d+)\s+(\S+)\s+\[[.k]\]\s+(\S+)")


def read_perf(report_text: str) -> Profile:
    """`perf report --stdio -n --sort dso,symbol`: samples per native symbol (self)."""
    self_time: Counter[str] = Counter()
    for line in report_text.splitlines():
        row = _PERF_ROW.match(line)
        if row:
            samples, dso, symbol = row.groups()
            self_time[f"{symbol} ({dso})"] += int(samples)
    return Profile(sum(self_time.values()), self_time, Counter())


def perf_report(data: Path) -> str:
    command = ["perf", "report", "-i", str(data), "--stdio", "-n", "--no-children", "-g", "none"]
    done = subprocess.run([*command, "--sort", "dso,symbol"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"perf report failed: {done.stderr.strip()}")
    return done.stdout


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


def native_report(name: str, script: str, measured: str, profile: Profile, top: int) -> list[str]:
    return [
        f"### {name}, native (perf)",
        "",
        f"`{script}` under `perf record -e cpu-clock -F 999`: `{measured}`; "
        f"{profile.samples:,} samples of the gateway's own CPU.",
        "",
        *table("self (symbol, library)", profile.self_time, profile.samples, top),
        "",
    ]


def run(script: str, label: str, recorded: Path, tool: str) -> str:
    env = {"PROFILE": str(recorded), "PROFILE_FORMAT": "raw", "PROFILE_TOOL": tool}
    done = subprocess.run(
        ["bash", script, label],
        cwd=gateway_root(),  # the scripts start `python -m gateway` from their directory
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    last = done.stdout.strip().splitlines()[-1:] or ["(no output)"]
    if done.returncode != 0 or not recorded.is_file():
        raise SystemExit(f"{script} failed: {done.stderr.strip() or last[0]}")
    return last[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=25, help="frames per table (default 25)")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    parser.add_argument("--build", choices=("compiled", "interpreted"), default="compiled")
    args = parser.parse_args(argv)
    tools = ("wrk", "redis-server", *(("perf",) if args.build == "compiled" else ()))
    missing = [t for t in tools if shutil.which(t) is None]
    if shutil.which("py-spy", path=str(REPO / ".venv/bin")) is None:
        missing.append("py-spy (pip install py-spy)")
    if missing:
        print(f"missing: {', '.join(missing)}", file=sys.stderr)
        return 2
    with gateway_build(args.build) as kind, tempfile.TemporaryDirectory() as tmp:
        if kind is None:
            return 1
        lines = [f"## Profile (`python -m benchmarks.profile`, {kind} build)", ""]
        for name, script in RUNS:
            if kind == "mypyc":
                data = Path(tmp) / f"{name}.perf"
                measured = run(script, "perf", data, "perf")
                native = read_perf(perf_report(data))
                lines += native_report(name, script, measured, native, args.top)
            collapsed = Path(tmp) / f"{name}.txt"
            measured = run(script, "profile", collapsed, "py-spy")
            profile = read_collapsed(collapsed.read_text())
            lines += report(name, script, measured, profile, args.top)
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
