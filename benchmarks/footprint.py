"""Start-up time and memory: exec -> /readyz 200, and RSS over a million events.

    python -m benchmarks.footprint [--events 1000000] [--starts 10]

- start-up: the gateway's command is exec'd `--starts` times (Redis already up);
  each time, the seconds from Popen until /readyz first answers 200 (polled every
  2 ms), then SIGTERM. Reported as min / median / max. A gateway that exits first, or
  is not ready within 30 s (benchmarks/bench.py's READY_TIMEOUT_S), stops the run
  with its last output.
- memory: one gateway with its forwarder on, delivering to the counting sink
  (benchmarks/sink_server.py), under wrk (fresh key per request) in 3 s rounds until
  `--events` events were admitted; after each round, the gateway's VmRSS from
  /proc. DEDUP_TTL is 60 s so Redis holds a bounded number of markers.

Pinning as in benchmarks/run.py on a machine with 2+ CPUs: the gateway on CPU 0,
wrk and the sink on the rest; Redis (AOF everysec, noeviction) is not pinned. The
processes are the harness' children (benchmarks/children.py): each log is in the
scratch directory, and none outlives the run. Prints a Markdown report and writes it
to benchmarks/FOOTPRINT.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.bench import start_redis, wait_ready
from benchmarks.children import Child, ChildFailed, Children, free_ports, rss_mib
from benchmarks.machine import Pinning, this_machine_pinning

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "FOOTPRINT.md"
WRK_SCRIPT = REPO / "benchmarks" / "wrk" / "post_fresh_key.lua"
ROUND_S = 3
START_POLL_S = 0.002  # the /readyz poll of a timed start: what is measured is the wait itself
STOP_GRACE_S = 20.0  # the gateway drains for up to its shutdown_grace (10 s) after SIGTERM


def start_gateway(
    children: Children, pinning: Pinning, env: dict[str, str], data: Path, name: str
) -> tuple[Child, int, int]:
    port, admin = free_ports(2)
    env = {**env, "GATEWAY_PORT": str(port), "GATEWAY_ADMIN_PORT": str(admin)}
    env["GATEWAY_DATA_DIR"] = str(data)
    argv = [sys.executable, "-m", "gateway", "run", "--config", "config/gateway.yaml"]
    return children.start(name, pinning.server(argv), env=env, cwd=REPO), port, admin


def time_to_ready(
    children: Children, pinning: Pinning, env: dict[str, str], data: Path, name: str
) -> float:
    started = time.monotonic()
    gateway, _, admin = start_gateway(children, pinning, env, data, name)
    try:
        return wait_ready(children, gateway, readyz(admin), START_POLL_S) - started
    finally:
        children.stop(gateway)


def readyz(admin: int) -> str:
    return f"http://127.0.0.1:{admin}/readyz"


def admitted(admin: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.findall(r"^webhook_gateway_events_admitted_total\{[^}]*\} (\S+)$", text, re.M)
    return int(sum(float(v) for v in found))


def rss_now(child: Child) -> float:
    """The child's VmRSS in MiB, unrounded (the report rounds, after the growth is taken)."""
    rss = rss_mib(child.process.pid)
    if rss is None:
        raise ChildFailed(f"{child.name} exited with code {child.returncode}:\n{child.log_tail()}")
    return rss


def memory_rounds(
    children: Children, pinning: Pinning, env: dict[str, str], data: Path, events: int
) -> list[tuple[int, float]]:
    (sink_port,) = free_ports(1)
    sink_argv = [sys.executable, "-m", "benchmarks.sink_server", "--port", str(sink_port)]
    sink = children.start("sink", pinning.load(sink_argv), cwd=REPO)
    env = {**env, "FORWARD_URL": f"http://127.0.0.1:{sink_port}/events", "DEDUP_TTL": "60s"}
    gateway, port, admin = start_gateway(children, pinning, env, data, "gateway")
    samples: list[tuple[int, float]] = []
    try:
        wait_ready(children, gateway, readyz(admin))
        samples.append((0, rss_now(gateway)))
        url = f"http://127.0.0.1:{port}/webhooks/inbox"
        wrk = ["wrk", "-t1", "-c64", f"-d{ROUND_S}s", "-s", str(WRK_SCRIPT), url]
        while samples[-1][0] < events:
            subprocess.run(pinning.load(wrk), check=True, capture_output=True)
            samples.append((admitted(admin), rss_now(gateway)))
            print(f"  {samples[-1][0]:>9,} events  RSS {samples[-1][1]:.1f} MiB", flush=True)
    finally:
        children.stop(gateway)
        children.stop(sink)
    return samples


def rss_near(samples: list[tuple[int, float]], events: int) -> tuple[int, float]:
    return min(samples, key=lambda s: abs(s[0] - events))


def report(starts: list[float], samples: list[tuple[int, float]], events: int) -> str:
    low, high = rss_near(samples, events // 5), samples[-1]
    lines = [
        "# Footprint",
        "",
        f"Run {time.strftime('%Y-%m-%dT%H:%M:%S%z')}: `python -m benchmarks.footprint"
        f" --events {events} --starts {len(starts)}` ({os.cpu_count()} CPUs; gateway pinned"
        " to CPU 0, wrk and the sink on the others, Redis unpinned).",
        "",
        "| measure | value |",
        "|---|--:|",
        f"| exec → /readyz 200, median of {len(starts)} | {statistics.median(starts):.3f} s |",
        f"| exec → /readyz 200, min / max | {min(starts):.3f} / {max(starts):.3f} s |",
        f"| RSS idle (ready, no events) | {samples[0][1]:.1f} MiB |",
        f"| RSS after {low[0]:,} events | {low[1]:.1f} MiB |",
        f"| RSS after {high[0]:,} events | {high[1]:.1f} MiB |",
        f"| growth from {low[0]:,} to {high[0]:,} events | {high[1] - low[1]:+.1f} MiB |",
        "",
        "RSS after each 3 s round of `wrk -t1 -c64` (forwarder on, delivering to the sink):",
        "",
        "| events admitted | RSS MiB |",
        "|--:|--:|",
        *(f"| {n:,} | {rss:.1f} |" for n, rss in samples),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--starts", type=int, default=10)
    args = parser.parse_args()
    pinning = this_machine_pinning()
    with (
        tempfile.TemporaryDirectory(prefix="gw-footprint-") as scratch,
        Children(Path(scratch), grace_s=STOP_GRACE_S) as children,
    ):
        data = Path(scratch)
        # Redis unpinned, as in every footprint run so far (the report says so).
        unpinned = dataclasses.replace(pinning, load_cpus=())
        env = {"STORE_URL": start_redis(children, unpinned, data), "LOG_LEVEL": "warning"}
        print("start-up:", flush=True)
        starts = [
            time_to_ready(children, pinning, env, data, f"gateway-start-{i}")
            for i in range(1, args.starts + 1)
        ]
        print("  " + " ".join(f"{s:.3f}" for s in starts), flush=True)
        print("memory:", flush=True)
        samples = memory_rounds(children, pinning, env, data, args.events)
    text = report(starts, samples, args.events)
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
