"""Start-up time and memory: exec -> /readyz 200, and RSS over a million events.

    python -m benchmarks.footprint [--events 1000000] [--starts 10]

- start-up: the gateway's command is exec'd `--starts` times (Redis already up);
  each time, the seconds from Popen until /readyz first answers 200 (polled every
  2 ms), then SIGTERM. Reported as min / median / max.
- memory: one gateway with its forwarder on, delivering to the counting sink
  (benchmarks/sink_server.py), under wrk (fresh key per request) in 3 s rounds until
  `--events` events were admitted; after each round, the gateway's VmRSS from
  /proc. DEDUP_TTL is 60 s so Redis holds a bounded number of markers.

Pinning as in benchmarks/run.py on a machine with 2+ CPUs: the gateway on CPU 0,
wrk, Redis and the sink on the rest. Prints a Markdown report and writes it to
benchmarks/FOOTPRINT.md.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.processes import RedisServer, free_port

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "FOOTPRINT.md"
WRK_SCRIPT = REPO / "benchmarks" / "wrk" / "post_fresh_key.lua"
ROUND_S = 3


SERVER_CPUS = "0"
LOAD_CPUS = f"1-{(os.cpu_count() or 2) - 1}"


def pin(argv: list[str], cpus: str) -> list[str]:
    return ["taskset", "-c", cpus, *argv] if (os.cpu_count() or 1) >= 2 else argv


def answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def start_gateway(env: dict[str, str], data: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    port, admin = free_port(), free_port()
    full = {**os.environ, **env, "GATEWAY_PORT": str(port), "GATEWAY_ADMIN_PORT": str(admin)}
    full["GATEWAY_DATA_DIR"] = str(data)
    argv = [sys.executable, "-m", "gateway", "run", "--config", "config/gateway.yaml"]
    log = (data / "gateway.log").open("ab")
    proc = subprocess.Popen(pin(argv, SERVER_CPUS), cwd=REPO, env=full, stdout=log, stderr=log)
    return proc, port, admin


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def time_to_ready(env: dict[str, str], data: Path) -> float:
    started = time.perf_counter()
    proc, _, admin = start_gateway(env, data)
    try:
        while not answers_200(f"http://127.0.0.1:{admin}/readyz"):
            if proc.poll() is not None:
                raise RuntimeError(f"the gateway exited with {proc.returncode}")
            time.sleep(0.002)  # the poll interval: what is measured is the wait itself
        return time.perf_counter() - started
    finally:
        stop(proc)


def admitted(admin: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.findall(r"^webhook_gateway_events_admitted_total\{[^}]*\} (\S+)$", text, re.M)
    return int(sum(float(v) for v in found))


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(found.group(1)) / 1024 if found else float("nan")


def gateway_pid(proc: subprocess.Popen[bytes]) -> int:
    """The gateway's own pid (taskset execs it, so it is the Popen's)."""
    return proc.pid


def memory_rounds(env: dict[str, str], data: Path, events: int) -> list[tuple[int, float]]:
    sink_port = free_port()
    sink_argv = [sys.executable, "-m", "benchmarks.sink_server", "--port", str(sink_port)]
    sink = subprocess.Popen(pin(sink_argv, LOAD_CPUS), cwd=REPO)
    env = {**env, "FORWARD_URL": f"http://127.0.0.1:{sink_port}/events", "DEDUP_TTL": "60s"}
    proc, port, admin = start_gateway(env, data)
    samples: list[tuple[int, float]] = []
    try:
        while not answers_200(f"http://127.0.0.1:{admin}/readyz"):
            time.sleep(0.01)
        samples.append((0, rss_mib(gateway_pid(proc))))
        url = f"http://127.0.0.1:{port}/webhooks/inbox"
        wrk = ["wrk", "-t1", "-c64", f"-d{ROUND_S}s", "-s", str(WRK_SCRIPT), url]
        while samples[-1][0] < events:
            subprocess.run(pin(wrk, LOAD_CPUS), check=True, capture_output=True)
            samples.append((admitted(admin), rss_mib(gateway_pid(proc))))
            print(f"  {samples[-1][0]:>9,} events  RSS {samples[-1][1]:.1f} MiB", flush=True)
    finally:
        stop(proc)
        stop(sink)
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
    redis_server = RedisServer()
    try:
        env = {"STORE_URL": redis_server.url, "LOG_LEVEL": "warning"}
        with tempfile.TemporaryDirectory(prefix="gw-footprint-") as scratch:
            data = Path(scratch)
            print("start-up:", flush=True)
            starts = [time_to_ready(env, data) for _ in range(args.starts)]
            print("  " + " ".join(f"{s:.3f}" for s in starts), flush=True)
            print("memory:", flush=True)
            samples = memory_rounds(env, data, args.events)
    finally:
        redis_server.close()
    text = report(starts, samples, args.events)
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
