"""Redis memory per dedup marker and per queued event, for the sizing table;
and how many seed events the local spool holds per MiB of `store.spool.max_size`.

Starts its own redis-server (AOF on, noeviction), admits events through the
gateway's own admit script, and reads `used_memory` before and after. The
spool part admits into a capped SQLite store until it answers "full".
Run: python -m benchmarks.sizing [--events 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

import redis

from gateway.config import StoreConfig
from gateway.errors import StoreUnavailable
from gateway.models import Admission, body_digest
from gateway.store.redis import RedisStore
from gateway.store.sqlite import SqliteStore
from tests.support.processes import RedisServer

SEED = Path(__file__).resolve().parents[1] / "tests/fixtures/inboxcomponents/message.received.json"


def admissions(count: int, targets: tuple[str, ...]) -> list[Admission]:
    body = SEED.read_bytes()
    prefix = os.urandom(24).hex()
    out = []
    for n in range(count):
        key = f"{prefix}{n:016x}"
        one = body.replace(
            b"ae74038cfaa2ead7095ef0517ead67f58eeca1abeb8dc60fa7a39b3bdfb04793", key.encode()
        )
        digest = body_digest(one)
        out.append(
            Admission(f"inboxcomponents:message.received:{key}", f"{prefix}:{n}",
                      "inboxcomponents", "message.received", key, one, digest, targets)
        )  # fmt: skip
    return out


async def admit_all(url: str, batch: list[Admission]) -> None:
    config = StoreConfig(url, 86400.0, 5.0, 1, "gw", 4, 5.0, 5.0)
    store = RedisStore(config)
    try:
        for start in range(0, len(batch), 500):
            await store.admit(0, batch[start : start + 500])
    finally:
        await store.close()


def measure(server: RedisServer, count: int, targets: tuple[str, ...]) -> float:
    client = redis.Redis(port=server.port)
    client.flushall()
    before = int(client.info("memory")["used_memory"])
    asyncio.run(admit_all(server.url, admissions(count, targets)))
    after = int(client.info("memory")["used_memory"])
    client.close()
    return (after - before) / count


SPOOL_CAP = 16 << 20  # a smaller cap than the default 256 MiB: the ratio is what counts


async def fill_spool(path: str) -> int:
    """Seed events (one target) admitted into a capped spool until it is full."""
    config = StoreConfig("", 86400.0, 5.0, 1, "gw", 4, 5.0, 5.0)
    store = SqliteStore(config, path=path, max_bytes=SPOOL_CAP)
    taken = 0
    try:
        while True:
            batch = admissions(500, ("app",))
            await store.admit(0, batch)
            taken += len(batch)
    except StoreUnavailable:
        return taken
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    count = parser.parse_args().events
    server = RedisServer()
    try:
        marker = measure(server, count, ())  # unrouted: marker only
        queued = measure(server, count, ("app",))
    finally:
        server.close()
    print(f"events: {count}")
    print(f"bytes per dedup marker (key + token|digest + TTL): {marker:.0f}")
    print(f"bytes per queued event (marker + stream entry, 905-byte body): {queued:.0f}")
    with tempfile.TemporaryDirectory() as scratch:
        spooled = asyncio.run(fill_spool(os.path.join(scratch, "spool.db")))
    per_event = SPOOL_CAP / spooled
    print(f"spool: {spooled} events in {SPOOL_CAP >> 20} MiB = {per_event:.0f} bytes per event;")
    print(f"  the default 256 MiB holds about {(256 << 20) / per_event:,.0f} events")


if __name__ == "__main__":
    main()
