"""Start-up time and memory: exec -> listening and -> /readyz 200, RSS over a million events.

    python -m benchmarks.footprint [--events 1000000] [--starts 10] [--store redis|sqlite]
                                   [--out FILE]

Also the `footprint` group of `python -m benchmarks.run` (measure_in_run), with the
run's Redis and pinning; a smoke run there admits SMOKE_EVENTS events, in 1 s rounds.

- start-up: the gateway's command is exec'd `--starts` times (Redis already up);
  each time, the seconds from Popen until its public port first accepts a TCP
  connection (connections wait from then on instead of being refused:
  gateway.listeners) and until /readyz first answers 200 (each polled every 2 ms),
  then SIGTERM. Reported as min / median / max. A gateway that exits first, or
  is not ready within 30 s (benchmarks/bench.py's READY_TIMEOUT_S), stops the run
  with its last output.
- idle: the same gateway, ready and sent nothing, for `idle_s` (10 s; 1 s in a smoke
  run): its CPU seconds (utime + stime from /proc) and the commands Redis processed
  meanwhile (INFO stats, less the reading's own INFO) per second. A sidecar idles most
  of its life in every pod, so this is most of what it costs to run. Redis serves only
  this gateway then (wrk and the sink do not touch it).
- memory: one gateway with its forwarder on, delivering to the counting sink
  (benchmarks/sink_server.py), under wrk (fresh key per request) in 3 s rounds until
  `--events` events were admitted, 2 rounds at least; after each round, the gateway's
  VmRSS from /proc. DEDUP_TTL is 60 s so Redis holds a bounded number of markers. A
  round that admits nothing stops the run (the gateway refuses the load).

Pinning as in benchmarks/run.py on a machine with 2+ CPUs: the gateway on CPU 0,
wrk and the sink on the rest; Redis (AOF everysec, noeviction) is not pinned here (in
the harness it is the run's Redis, on the load CPUs). The processes are the harness'
children (benchmarks/children.py): each log is in the scratch directory, and none
outlives the run. Prints a Markdown report and writes it to benchmarks/FOOTPRINT.md
(`--out`). `--store sqlite` runs the gateway on the embedded SQLite store instead (a
file in the scratch directory, no Redis; the idle row then has no Redis commands).
BENCH_GATEWAY_ROOT=DIR runs the gateway of another checkout (benchmarks.systems).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from benchmarks.bench import WRK_OVERRUN_S, Bench, flush_store, start_redis, wait_ready
from benchmarks.children import Child, ChildFailed, Children, free_ports, rss_mib, wait_until
from benchmarks.delivery import Sink
from benchmarks.delivery_checks import counter_totals
from benchmarks.machine import Pinning, this_machine_pinning
from benchmarks.process_report import (
    TARGET_EVENTS,
    footprint_facts,
    footprint_rounds,
    footprint_table,
)
from benchmarks.systems import gateway_root
from benchmarks.wrkout import WrkParseError, parse_wrk_output

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "FOOTPRINT.md"
WRK_SCRIPT = REPO / "benchmarks" / "wrk" / "post_fresh_key.lua"
GROUP = "footprint"
ROUND_S = 3
SMOKE_ROUND_S = 1
MIN_ROUNDS = 2
DEFAULT_EVENTS = TARGET_EVENTS
SMOKE_EVENTS = 20_000
IDLE_S = 10.0
SMOKE_IDLE_S = 1.0
DEFAULT_STARTS = 10
SMOKE_STARTS = 3
START_POLL_S = 0.002  # the /readyz poll of a timed start: what is measured is the wait itself
STOP_GRACE_S = 20.0  # the gateway drains for up to its shutdown_grace (10 s) after SIGTERM


@dataclass(frozen=True, slots=True)
class FootprintPlan:
    events: int  # admitted before the last round ends
    starts: int
    round_s: int = ROUND_S
    smoke: bool = False
    idle_s: float = IDLE_S

    @classmethod
    def of_run(cls, events: int, *, smoke: bool) -> FootprintPlan:
        """The harness' plan (a smoke run: fewer starts, 1 s rounds, 1 s idle)."""
        if smoke:
            return cls(events, SMOKE_STARTS, SMOKE_ROUND_S, smoke=True, idle_s=SMOKE_IDLE_S)
        return cls(events, DEFAULT_STARTS)

    def wrk(self, url: str) -> list[str]:
        return ["wrk", "-t1", "-c64", f"-d{self.round_s}s", "--latency", "-s", str(WRK_SCRIPT), url]


@dataclass(slots=True)
class Rounds:
    """The memory half: (events admitted, RSS MiB) after each round, the first idle."""

    samples: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    idle: dict[str, float] = dataclasses.field(default_factory=dict)  # idle_cost's
    requests: int = 0
    non2xx: int = 0
    errors: int = 0  # wrk's socket errors


def start_gateway(
    children: Children, pinning: Pinning, env: dict[str, str], data: Path, name: str
) -> tuple[Child, int, int]:
    port, admin = free_ports(2)
    env = {**env, "GATEWAY_PORT": str(port), "GATEWAY_ADMIN_PORT": str(admin)}
    env["GATEWAY_DATA_DIR"] = str(data)
    argv = [sys.executable, "-m", "gateway", "run", "--config", "config/gateway.yaml"]
    child = children.start(name, pinning.server(argv), env=env, cwd=gateway_root())
    return child, port, admin


def time_to_ready(
    children: Children, pinning: Pinning, env: dict[str, str], data: Path, name: str
) -> tuple[float, float]:
    """Seconds from exec until the public port accepts a connection (gateway.listeners
    binds it before the imports), and until /readyz answers 200."""
    started = time.monotonic()
    gateway, port, admin = start_gateway(children, pinning, env, data, name)
    try:
        what = f"listening on {port}"
        listening = wait_until(lambda: accepts(port), [gateway], 30, what, poll_s=START_POLL_S)
        return listening - started, wait_ready(
            children, gateway, readyz(admin), START_POLL_S
        ) - started
    finally:
        children.stop(gateway)


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def readyz(admin: int) -> str:
    return f"http://127.0.0.1:{admin}/readyz"


def admitted(admin: int) -> int:
    url = f"http://127.0.0.1:{admin}/metrics"
    return int(sum(counter_totals(url, ("webhook_gateway_events_admitted",), timeout=5).values()))


def rss_now(child: Child) -> float:
    """The child's VmRSS in MiB, unrounded (the report rounds, after the growth is taken)."""
    rss = rss_mib(child.process.pid)
    if rss is None:
        raise ChildFailed(f"{child.name} exited with code {child.returncode}:\n{child.log_tail()}")
    return rss


def memory_rounds(
    children: Children, pinning: Pinning, env: dict[str, str], data: Path, plan: FootprintPlan
) -> Rounds:
    sink = start_sink(children, pinning, f"{GROUP}-sink")
    env = {**env, "FORWARD_URL": sink.url, "DEDUP_TTL": "60s"}
    gateway, port, admin = start_gateway(children, pinning, env, data, f"{GROUP}-gateway")
    rounds = Rounds()
    try:
        wait_ready(children, gateway, readyz(admin))
        rounds.samples.append((0, rss_now(gateway)))
        rounds.idle = idle_cost(gateway, env["STORE_URL"], plan.idle_s)
        wrk = pinning.load(plan.wrk(f"http://127.0.0.1:{port}/webhooks/inbox"))
        # Two rounds at least, so that the growth is taken between two of them.
        while rounds.samples[-1][0] < plan.events or len(rounds.samples) <= MIN_ROUNDS:
            _one_round(wrk, plan, rounds)
            rounds.samples.append((admitted(admin), rss_now(gateway)))
            events, rss = rounds.samples[-1]
            print(f"  {events:>9,} events  RSS {rss:.1f} MiB", flush=True)
            if rounds.samples[-1][0] <= rounds.samples[-2][0]:
                raise ChildFailed(f"a round admitted no events:\n{gateway.log_tail()}")
    finally:
        children.stop(gateway)
        children.stop(sink.child)
    return rounds


def start_sink(children: Children, pinning: Pinning, name: str, *args: str) -> Sink:
    """benchmarks/sink_server.py on the load CPUs (`args`: its options), answering."""
    (port,) = free_ports(1)
    argv = [sys.executable, "-m", "benchmarks.sink_server", "--port", str(port), *args]
    child = children.start(name, pinning.load(argv), cwd=REPO)
    sink = Sink(child, f"http://127.0.0.1:{port}/events", f"http://127.0.0.1:{port}/count")
    wait_ready(children, child, sink.count_url)
    return sink


def idle_cost(gateway: Child, store_url: str, seconds: float) -> dict[str, float]:
    """The gateway's CPU and Redis' commands per second while nothing is sent (the
    sleep is the measured span, not a wait for something to happen). No Redis
    commands on the SQLite store."""
    with contextlib.ExitStack() as stack:
        client = None
        if store_url.startswith(("redis://", "rediss://")):
            client = stack.enter_context(redis.Redis.from_url(store_url))
        commands, cpu = _commands(client), gateway.cpu_seconds()
        time.sleep(seconds)
        commands_after, spent = _commands(client), gateway.cpu_seconds()
    if cpu is None or spent is None:
        raise ChildFailed(f"{gateway.name} exited while idle:\n{gateway.log_tail()}")
    idle = {"seconds": seconds, "cpu_s": round(spent - cpu, 3)}
    if client is not None:
        # The first INFO counts itself in the second reading.
        idle["redis_commands"] = commands_after - commands - 1
    print(f"  idle {seconds:g} s: " + ", ".join(f"{k} {v}" for k, v in idle.items()), flush=True)
    return idle


def _commands(client: redis.Redis | None) -> int:
    return 0 if client is None else int(client.info("stats")["total_commands_processed"])


def _one_round(wrk: list[str], plan: FootprintPlan, rounds: Rounds) -> None:
    timeout_s = plan.round_s + WRK_OVERRUN_S
    done = subprocess.run(wrk, check=True, capture_output=True, text=True, timeout=timeout_s)
    result = parse_wrk_output(done.stdout)
    rounds.requests += result.requests
    rounds.non2xx += result.non2xx
    rounds.errors += result.socket_errors.total


def measure(
    children: Children, pinning: Pinning, env: dict[str, str], data: Path, plan: FootprintPlan
) -> dict[str, Any]:
    """The starts, then the memory rounds: the facts (benchmarks.process_report)."""
    print("start-up:", flush=True)
    timed = [
        time_to_ready(children, pinning, env, data, f"{GROUP}-start-{i}")
        for i in range(1, plan.starts + 1)
    ]
    listening, starts = [list(seconds) for seconds in zip(*timed, strict=True)]
    print("  listening " + " ".join(f"{s:.3f}" for s in listening), flush=True)
    print("  ready     " + " ".join(f"{s:.3f}" for s in starts), flush=True)
    print("memory:", flush=True)
    rounds = memory_rounds(children, pinning, env, data, plan)
    wrk = {"requests": rounds.requests, "non2xx": rounds.non2xx, "errors": rounds.errors}
    return footprint_facts(starts, rounds.samples, plan.events, listening, rounds.idle) | {
        "round_s": plan.round_s,
        "wrk": wrk,
        "wrk_command": " ".join(plan.wrk("URL")[:5]),
        "smoke": plan.smoke,
    }


def measure_in_run(bench: Bench, plan: FootprintPlan) -> dict[str, Any]:
    """The `footprint` group of benchmarks.run: the run's Redis (emptied) and pinning."""
    where = "the gateway on the server CPU, wrk, the sink and Redis on the load CPUs"
    pinned = bench.pinning.pinned
    pinning = f"Pinned as the rest of the run: {where}." if pinned else f"{bench.pinning.note}."
    print(f"\n== footprint: {plan.starts} starts, RSS over {plan.events:,} events", flush=True)
    data = bench.workdir / GROUP
    data.mkdir()
    env = {"STORE_URL": bench.store_url, "LOG_LEVEL": "warning"}
    facts: dict[str, Any] = {"events": plan.events, "smoke": plan.smoke, "pinning": pinning}
    try:
        flush_store(bench.store_url)
        facts |= measure(bench.children, bench.pinning, env, data, plan)
    except (
        ChildFailed,
        OSError,
        subprocess.SubprocessError,
        WrkParseError,
        redis.RedisError,
    ) as exc:
        print(f"   footprint: FAILED: {exc}", flush=True)
        return facts | {"error": str(exc), "usable": False, "flags": [f"failed: {exc}"]}
    wrk = facts["wrk"]
    flags = [f"{wrk[k]:,} {k}" for k in ("non2xx", "errors") if wrk[k]]
    return facts | {"error": None, "usable": True, "flags": flags}


def report(facts: dict[str, Any]) -> str:
    lines = [
        "# Footprint",
        "",
        f"Run {time.strftime('%Y-%m-%dT%H:%M:%S%z')}: `python -m benchmarks.footprint"
        f" --events {facts['events']} --starts {len(facts['starts_s'])}"
        f" --store {facts['store']}` ({os.cpu_count()} CPUs; gateway pinned to CPU 0, wrk and"
        " the sink on the others, "
        + ("Redis unpinned)." if facts["store"] == "redis" else "no Redis).")
        + (f" The gateway of {gateway_root()}." if gateway_root() != REPO else ""),
        "",
        *footprint_table(facts),
        "",
        *footprint_rounds(facts),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    parser.add_argument("--starts", type=int, default=DEFAULT_STARTS)
    parser.add_argument("--store", choices=("redis", "sqlite"), default="redis")
    parser.add_argument("--out", type=Path, default=OUT, help="the report (FOOTPRINT.md)")
    args = parser.parse_args()
    pinning = this_machine_pinning()
    with (
        tempfile.TemporaryDirectory(prefix="gw-footprint-") as scratch,
        Children(Path(scratch), grace_s=STOP_GRACE_S) as children,
    ):
        data = Path(scratch)
        if args.store == "sqlite":
            store = f"sqlite:///{data}/store/gateway.db"
        else:
            # Redis unpinned, as in every footprint run so far (the report says so).
            store = start_redis(children, dataclasses.replace(pinning, load_cpus=()), data)
        env = {"STORE_URL": store, "LOG_LEVEL": "warning"}
        facts = measure(children, pinning, env, data, FootprintPlan(args.events, args.starts))
    text = report(facts | {"store": args.store})
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
