"""How long an event takes from the provider's POST to the app, through the gateway.

    python -m benchmarks.hop [--rates 100,1000] [--seconds 5] [--connections 8]
                             [--build compiled|interpreted]

One gateway (Redis store, AOF everysec, forwarder on) between this process, posting
the InboxComponents seed with a fresh idempotency key per request at a paced rate over
keep-alive connections, and the sink (benchmarks/sink_server.py --record), which notes
when each event arrived. Per event, from the moment its request was written:

- ack: until its 200 was read back (the provider's wait);
- app: until the sink had read the whole delivery (what the gateway adds before the
  app sees the event: the admit, the claim, the render and the POST).

Both are read on time.monotonic(), one clock for every process of the machine. Each
rate runs for `--seconds` after a 1 s warm-up at that rate (not counted); a request is
sent at its slot, or as soon as a connection is free (no correction for coordinated
omission, as wrk). Pinned as the harness pins: the gateway on the server CPU; Redis, the
sink and this process on the load CPUs. Prints a Markdown table of p50 / p90 / p99 / max
per rate; no file is written. --build compiled (the default, as the container image ships
it) runs a mypyc-compiled copy of the checkout (./dev.sh compiled-copy, as the harness).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import uvloop

from benchmarks.backlog import SEED
from benchmarks.bench import start_redis, wait_ready
from benchmarks.children import ChildFailed, Children, wait_until
from benchmarks.delivery import Sink
from benchmarks.footprint import readyz, start_gateway, start_sink
from benchmarks.machine import Pinning, this_machine_pinning
from benchmarks.run import gateway_build

WARMUP_S = 1.0
SETTLE_S = 30.0  # every acked event reaches the sink within this, or the run fails
QUANTILES = (0.5, 0.9, 0.99)


@dataclass(slots=True)
class Timings:
    """Per idempotency key: when its request was written and when its 200 was read."""

    sent: dict[str, float] = field(default_factory=dict)
    acked: dict[str, float] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # keys answered other than 200


def request(key: str, seed: dict[str, object], port: int) -> bytes:
    body = json.dumps({**seed, "idempotency_key": key}, separators=(",", ":")).encode()
    head = (
        f"POST /webhooks/inbox HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def post(
    free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    key: str,
    data: bytes,
    timings: Timings,
) -> None:
    reader, writer = await free.get()
    timings.sent[key] = time.monotonic()
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    timings.acked[key] = time.monotonic()
    if not head.startswith(b"HTTP/1.1 200 "):
        timings.refused.append(key)
    free.put_nowait((reader, writer))


async def paced(port: int, rate: float, seconds: float, connections: int, prefix: str) -> Timings:
    """`rate` requests a second for `seconds`, each at its slot or once a connection frees."""
    seed = json.loads(SEED.read_bytes())
    free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        free.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    timings = Timings()
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks = []
    for i in range(round(rate * seconds)):
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))  # the pacing itself
        key = f"{prefix}-{i}"
        tasks.append(asyncio.create_task(post(free, key, request(key, seed, port), timings)))
    await asyncio.gather(*tasks)
    while not free.empty():
        _, writer = free.get_nowait()
        writer.close()
    return timings


def quantiles(values: Sequence[float]) -> list[float]:
    """p50, p90, p99 and the max, in ms."""
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return [cuts[round(q * 100) - 1] * 1000 for q in QUANTILES] + [max(values) * 1000]


def hops(timings: Timings, arrivals: dict[str, float]) -> tuple[list[float], list[float]]:
    """Seconds from each send to its ack, and to its arrival at the sink."""
    keys = sorted(timings.acked)
    missing = [k for k in keys if k not in arrivals]
    if missing or timings.refused:
        raise ChildFailed(f"not delivered: {missing[:5]}; not 200: {timings.refused[:5]}")
    return (
        [timings.acked[k] - timings.sent[k] for k in keys],
        [arrivals[k] - timings.sent[k] for k in keys],
    )


def read_arrivals(record: Path) -> dict[str, float]:
    found = {}
    for line in record.read_text().splitlines():
        key, at = line.rsplit(" ", 1)
        found[key] = float(at)
    return found


def delivered(sink: Sink, events: int) -> bool:
    """Whether the sink has counted `events` POSTs."""
    return (sink.count() or 0) >= events


Result = tuple[float, int, list[float], list[float]]  # rate, events, ack and app seconds


def run_rates(
    children: Children, pinning: Pinning, scratch: Path, rates: Sequence[float], args: Options
) -> list[Result]:
    store = start_redis(children, pinning, scratch)
    record = scratch / "arrivals.txt"
    sink = start_sink(children, pinning, "sink", "--record", str(record))
    env = {"STORE_URL": store, "LOG_LEVEL": "warning", "FORWARD_URL": sink.url}
    gateway, port, admin = start_gateway(children, pinning, env, scratch, "gateway")
    wait_ready(children, gateway, readyz(admin))
    measured: list[tuple[float, Timings]] = []
    sent = 0
    for rate in rates:
        for label, seconds in (("warm", WARMUP_S), ("hop", args.seconds)):
            prefix = f"{label}{rate:g}"
            timings = uvloop.run(paced(port, rate, seconds, args.connections, prefix))
            sent += len(timings.acked)
            watched = [gateway, sink.child]
            wait_until(partial(delivered, sink, sent), watched, SETTLE_S, "delivered")
            if label == "hop":
                measured.append((rate, timings))
    children.stop(gateway)
    children.stop(sink.child)  # it writes the record as it stops
    arrivals = read_arrivals(record)
    return [(rate, len(t.acked), *hops(t, arrivals)) for rate, t in measured]


@dataclass(frozen=True, slots=True)
class Options:
    seconds: float
    connections: int


def report(results: Sequence[Result], note: str) -> str:
    lines = [
        "| rate /s | events | ack p50 / p90 / p99 / max, ms | app p50 / p90 / p99 / max, ms |",
        "|--:|--:|--:|--:|",
    ]
    for rate, events, ack, app in results:
        cells = [" / ".join(f"{v:.2f}" for v in quantiles(xs)) for xs in (ack, app)]
        lines.append(f"| {rate:,.0f} | {events:,} | {cells[0]} | {cells[1]} |")
    return "\n".join([*lines, "", note])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="100,1000", help="requests per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured per rate")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--build", choices=("compiled", "interpreted"), default="compiled")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    pinning = this_machine_pinning()
    if pinning.pinned:
        os.sched_setaffinity(0, set(pinning.load_cpus))
    with (
        gateway_build(args.build) as kind,
        tempfile.TemporaryDirectory(prefix="gw-hop-") as scratch,
        Children(Path(scratch)) as children,
    ):
        if kind is None:
            return 1
        try:
            options = Options(args.seconds, args.connections)
            results = run_rates(children, pinning, Path(scratch), rates, options)
        except ChildFailed as exc:
            print(f"hop: {exc}", file=sys.stderr)
            return 1
    where = "the gateway on its CPU; Redis, the sink and this client on the others"
    pinned = where if pinning.pinned else pinning.note
    note = f"The gateway's {kind} build; {args.connections} connections; {pinned}."
    print(report(results, note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
