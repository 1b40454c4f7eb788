"""What one Redis round trip costs the caller's CPU: redis-py against gateway/store/link.py.

Sequential PINGs (each awaited before the next) on one pinned process, against a
redis-server started here on the other CPU (the harness' own, benchmarks/bench.py's
start_redis; a PING writes nothing to its AOF): redis-py's client (`await r.ping()`),
redis-py with a connection taken from its pool and given back per call, the same
connection held, the gateway's Link, and a bare asyncio protocol (the floor). Prints
the process's CPU µs per call (time.process_time) for each.

    python -m benchmarks.redis_call [--calls 20000]

This decided that the hot calls (admit, the forwarder's claim and ack) bypass
redis-py (gateway/store/link.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import redis.asyncio as aioredis
import uvloop

from benchmarks.bench import redis_beside
from gateway.store.link import Link, LinkSettings

PING = b"*1\r\n$4\r\nPING\r\n"


class _Bare(asyncio.Protocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[bytes] | None = None

    def data_received(self, data: bytes) -> None:
        if self.waiter is not None:
            self.waiter.set_result(data)


async def measure(url: str, port: int, calls: int) -> dict[str, float]:
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=4, socket_timeout=1.0)
    client = aioredis.Redis(connection_pool=pool)
    settings = LinkSettings.from_url(url, 1.0, 1.0)
    assert settings is not None
    link = Link(settings)
    loop = asyncio.get_running_loop()
    transport, bare = await loop.create_connection(_Bare, "127.0.0.1", port)
    held = await pool.get_connection()  # type: ignore[no-untyped-call]

    async def pooled() -> None:
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(PING)
            await conn.read_response()
        finally:
            await pool.release(conn)

    async def held_conn() -> None:
        await held.send_packed_command(PING)
        await held.read_response()

    async def bare_ping() -> None:
        bare.waiter = loop.create_future()
        transport.write(PING)
        await bare.waiter

    ways: dict[str, Callable[[], Awaitable[object]]] = {
        "redis-py client (await r.ping())": client.ping,
        "redis-py pool connection per call": pooled,
        "redis-py connection held": held_conn,
        "gateway Link": lambda: link.call(PING),
        "bare asyncio protocol": bare_ping,
    }
    results = {}
    for name, call in ways.items():
        for _ in range(200):  # connect and warm up
            await call()
        started = time.process_time()
        for _ in range(calls):
            await call()
        results[name] = (time.process_time() - started) / calls * 1e6
    await pool.release(held)
    transport.close()
    link.close()
    await client.aclose()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    with redis_beside(pin_self=True) as (url, cpus):
        port = urlsplit(url).port
        assert port is not None
        results = uvloop.run(measure(url, port, args.calls))
    pinned = f"; this process on CPU {cpus[0]}, redis-server on CPU {cpus[1]}" if cpus else ""
    print(f"{args.calls:,} sequential PINGs each" + pinned)
    for name, micros in results.items():
        print(f"{name:40} {micros:6.1f} µs of CPU per call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
