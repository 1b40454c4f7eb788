"""The forwarder's claim budget (concurrency + prefetch) holds across its claim
loops, one per partition, claiming side by side: each takes its share of the free
slots, so together they hold at most the budget plus one per partition."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
import redis
from prometheus_client import CollectorRegistry

from gateway.config import ForwarderConfig
from gateway.forwarder import PREFETCH, TargetForwarder
from gateway.metrics import Metrics
from gateway.store.redis import RedisStore
from tests.support.processes import RedisServer
from tests.support.stores import store_config
from tests.support.webhooks import seed
from tests.unit.test_delivery_rules import SOURCES, target

pytestmark = pytest.mark.integration

PARTITIONS = 8
CONCURRENCY = 4


class SilentApp:
    """An app that reads each request's head and never answers."""

    def __init__(self, wanted: int) -> None:
        self.heads = 0
        self.enough = asyncio.Event()
        self._wanted = wanted

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.heads += 1
        if self.heads >= self._wanted:
            self.enough.set()
        await reader.read()  # until the forwarder lets go of the connection
        writer.close()


def test_partitions_claiming_side_by_side_hold_no_more_than_the_budget(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    budget = CONCURRENCY + int(CONCURRENCY * PREFETCH)  # 6; 24 were held before

    async def scenario() -> int:
        app = SilentApp(CONCURRENCY)
        server = await asyncio.start_server(app.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        store = RedisStore(store_config(redis_server.url, partitions=PARTITIONS), block_ms=100)
        for p in range(PARTITIONS):
            for i in range(20):
                fields = {"source": "inbox", "type": "message.received", "key": f"p{p}-{i}"}
                redis_db.xadd(store.keys.stream(p, "app"), {**fields, "body": seed()})
        url = f"http://127.0.0.1:{port}/events"
        app_target = dataclasses.replace(
            target("raw"), url=url, port=port, path="/events", concurrency=CONCURRENCY
        )
        metrics = Metrics(CollectorRegistry()).target("app")
        config = ForwarderConfig(True, 60.0, 100, "budget")
        forwarder = TargetForwarder(app_target, SOURCES, store, config, metrics, False)
        forwarder.start()
        try:
            async with asyncio.timeout(10):
                await app.enough.wait()  # every delivery slot busy: claims are done
            return sum(
                redis_db.xpending(store.keys.stream(p, "app"), "gateway")["pending"]
                for p in range(PARTITIONS)
            )
        finally:
            await forwarder.stop(0.1)
            await store.close()
            server.close()

    assert asyncio.run(scenario()) <= budget + PARTITIONS
