"""What people write instead, aiohttp flavour: `await request.json()`, one awaited SET NX.

The idiomatic aiohttp.web handler: the whole JSON body is parsed, one
`SET marker 1 NX EX ttl` through redis.asyncio (hiredis installed, the default
connection pool), then `web.json_response`. Served on uvloop (the same loop as the
gateway and the bare servers), one process, access log off (the gateway logs no line
per request either); aiohttp's own C HTTP parser.

    python -m benchmarks.aiohttp_app --port 8080 --store-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import redis.asyncio as aioredis
import uvloop
from aiohttp import web

TTL_S = 24 * 3600
REDIS: web.AppKey[aioredis.Redis] = web.AppKey("redis", aioredis.Redis)


async def inbox(request: web.Request) -> web.Response:
    webhook = await request.json()
    marker = f"idem:{webhook['event']}:{webhook['idempotency_key']}"
    fresh = await request.app[REDIS].set(marker, 1, nx=True, ex=TTL_S)
    return web.json_response({"status": "accepted" if fresh else "duplicate"})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def serve(host: str, port: int, store_url: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    app = web.Application()
    app[REDIS] = aioredis.Redis.from_url(store_url)
    await app[REDIS].ping()
    app.add_routes([web.post("/webhooks/inbox", inbox), web.get("/healthz", healthz)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=4096).start()
    print(f"aiohttp_app listening on {host}:{port}", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await app[REDIS].aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store-url", required=True)
    args = parser.parse_args(argv)
    uvloop.run(serve(args.host, args.port, args.store_url))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
