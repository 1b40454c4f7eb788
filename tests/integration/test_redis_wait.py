"""store.wait_replicas: an admit is acked only once a replica has it (Redis WAIT).

A real primary and a real replica (redis-server --replicaof), the gateway
ingest-only; what the replica holds is read from the replica itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.configs import config_variant
from tests.support.processes import GatewayProcess, RedisServer, wait_until
from tests.support.webhooks import post_once, with_key

pytestmark = pytest.mark.integration

STREAM = "{gw:0}:q:app"


@pytest.fixture
def primary() -> Iterator[RedisServer]:
    server = RedisServer("--repl-diskless-sync-delay", "0")  # the replica syncs at once
    yield server
    server.close()


@pytest.fixture
def replica(primary: RedisServer) -> Iterator[RedisServer]:
    server = RedisServer("--replicaof", "127.0.0.1", str(primary.port))
    client = redis.Redis(port=server.port)
    wait_until(
        lambda: client.info("replication")["master_link_status"] == "up",
        what="the replica's link to the primary",
    )
    # After the sync a replica with AOF on rewrites its AOF (a fork and a full write):
    # on a loaded 2-CPU machine that held its first REPLCONF ACK past a 200 ms WAIT
    # (the first admit got 503 in about one run of three). Wait until it is done.
    wait_until(lambda: _aof_idle(client), what="the replica's AOF rewrite after its sync")
    # That check can come before the rewrite is even scheduled (the first admit still
    # got 503 in 2 of 6 runs): also wait until a write reaches it within the
    # gateway's wait_timeout, then that the rewrite, if one began, is done.
    writer = redis.Redis(port=primary.port)
    wait_until(lambda: _acked_in_time(writer), what="the replica acking a write in 200 ms")
    wait_until(lambda: _aof_idle(client), what="the replica's AOF rewrite after its sync")
    writer.delete("replica-probe")
    writer.close()
    yield server
    client.close()
    if server.proc is not None:
        server.proc.kill()
        server.proc.wait(5)
        server.proc = None
    server.close()


def start(
    primary: RedisServer, tmp_path: Path, spool: bool, wait_timeout: str = "200ms"
) -> GatewayProcess:
    store = {"wait_replicas": 1, "wait_timeout": wait_timeout, "spool": {"enabled": spool}}
    changes = {"forwarder": {"enabled": False}, "store": {**store, "admit_deadline": "5s"}}
    config = config_variant(tmp_path, changes)
    return GatewayProcess({"STORE_URL": primary.url}, config=config).start()


def _acked_in_time(writer: redis.Redis) -> bool:
    writer.set("replica-probe", "1")
    return int(writer.wait(1, 200)) >= 1


def _aof_idle(client: redis.Redis) -> bool:
    persistence = client.info("persistence")
    return not persistence["aof_rewrite_in_progress"] and not persistence["aof_rewrite_scheduled"]


def test_an_ack_means_the_replica_already_has_the_event(
    primary: RedisServer, replica: RedisServer, tmp_path: Path
) -> None:
    # 2 s, not 200 ms: each of the 20 admits waits for the replica's ack, and a busy
    # 2-CPU machine can hold one past 200 ms (the test below needs no ack at all).
    gw = start(primary, tmp_path, spool=False, wait_timeout="2s")
    try:
        on_replica = redis.Redis(port=replica.port)
        for i in range(20):
            answer = post_once(gw.port, with_key(f"w-{i}"))
            assert answer.json().get("status") == "accepted", (i, answer.status, answer.json())
            # Read at once, no waiting. Replication on loopback is fast enough
            # that this alone would hold without WAIT too: the test below, with
            # no replica, is the one that fails if WAIT is not sent.
            assert on_replica.xlen(STREAM) == i + 1
        on_replica.close()
    finally:
        gw.close()


def test_without_a_replica_the_admit_fails_503_or_spools(
    primary: RedisServer, replica: RedisServer, tmp_path: Path
) -> None:
    assert replica.proc is not None
    replica.proc.kill()  # the replica is gone (a SIGTERM'd replica can take >10 s to stop)
    replica.proc.wait(5)
    replica.proc = None
    strict = start(primary, tmp_path, spool=False)
    try:
        answer = post_once(strict.port, with_key("lonely"))
        assert (answer.status, answer.json()["error"]) == (503, "store_unavailable")
        wait_until(lambda: "0 of 1 replicas (WAIT)" in strict.logs(), what="the WAIT log line")
    finally:
        strict.close()
    spooling = start(primary, tmp_path, spool=True)
    try:
        assert post_once(spooling.port, with_key("spooled")).json()["status"] == "accepted"
        assert "redis_unavailable_spooling" in spooling.logs()
    finally:
        spooling.close()
