"""The gateway process against a real redis-server: ack, dedup, refuse, drain."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from gateway import build as gateway_build
from tests.support.configs import config_variant
from tests.support.processes import GatewayProcess, RedisServer, http_status, wait_until
from tests.support.rawhttp import RawClient, post
from tests.support.webhooks import Poster, post_once, seed, with_key

pytestmark = pytest.mark.integration

STREAM = "{gw:0}:q:app"


@pytest.fixture
def start_gateway(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path
) -> Callable[..., GatewayProcess]:
    """Ingest only: the forwarder is off, so what was admitted stays in the queue."""
    ingest_only = config_variant(tmp_path, {"forwarder": {"enabled": False}})
    return lambda **kw: start_gateway(**{"config": ingest_only, **kw})


@pytest.fixture
def gateway(start_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    return start_gateway()


def queued(db: redis.Redis) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in db.xrange(STREAM)]


def test_both_seed_payloads_are_acked_and_queued_byte_for_byte(
    gateway: GatewayProcess, redis_db: redis.Redis
) -> None:
    for name in ("message.received", "message.sent"):
        answer = post_once(gateway.port, seed(name))
        assert (answer.status, answer.json()) == (200, {"status": "accepted"})
    entries = queued(redis_db)
    assert [e[b"type"] for e in entries] == [b"message.received", b"message.sent"]
    assert [e[b"body"] for e in entries] == [seed("message.received"), seed("message.sent")]
    assert {e[b"source"] for e in entries} == {b"inboxcomponents"}
    # The seeds share one idempotency_key: the marker is per event type, so
    # neither event is mistaken for a duplicate of the other.
    assert len(redis_db.keys("{gw:0}:idem:*")) == 2


def test_dedup_marker_carries_the_configured_ttl(
    start_gateway: Callable[..., GatewayProcess], redis_db: redis.Redis
) -> None:
    gw = start_gateway(DEDUP_TTL="90s")
    assert post_once(gw.port, with_key("ttl-1")).status == 200
    (marker,) = redis_db.keys("{gw:0}:idem:*")
    assert 85_000 < redis_db.pttl(marker) <= 90_000


def test_same_key_five_times_in_a_row_is_queued_once(
    gateway: GatewayProcess, redis_db: redis.Redis
) -> None:
    poster = Poster(gateway.port)
    answers = [poster.post(with_key("k-seq")) for _ in range(5)]
    poster.close()
    assert [a.status for a in answers] == [200] * 5
    assert [a.json()["status"] for a in answers] == ["accepted"] + ["duplicate"] * 4
    assert len(queued(redis_db)) == 1


def test_same_key_fifty_times_concurrently_is_queued_once(
    gateway: GatewayProcess, redis_db: redis.Redis
) -> None:
    barrier = threading.Barrier(50)
    body = with_key("k-concurrent")

    def send(_: int) -> tuple[int, object]:
        poster = Poster(gateway.port)
        poster.conn.connect()
        barrier.wait(10)
        answer = poster.post(body)
        poster.close()
        return answer.status, answer.json()["status"]

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(send, range(50)))
    assert [status for status, _ in results] == [200] * 50
    assert sorted(kind for _, kind in results).count("accepted") == 1
    assert len(queued(redis_db)) == 1


def test_pipelined_requests_share_one_admit_call(
    gateway: GatewayProcess, redis_db: redis.Redis
) -> None:
    post_once(gateway.port, with_key("warm-up"))  # loads the script
    redis_db.config_resetstat()
    client = RawClient.connect(gateway.port)
    client.send(b"".join(post("/webhooks/inbox", with_key(f"p-{i}")) for i in range(20)))
    answers = [client.read_response() for _ in range(20)]
    client.close()
    assert [a.status for a in answers] == [200] * 20
    calls = redis_db.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    assert 1 <= calls < 20
    assert len(queued(redis_db)) == 21


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"event": "message.sent"', "invalid JSON"),
        (b"[1, 2]", "invalid payload"),
        (json.dumps({"event": "message.sent", "data": {}}).encode(), "idempotency_key"),
        (json.dumps({"idempotency_key": "k", "event": ""}).encode(), "event"),
        (json.dumps({"idempotency_key": 7, "event": "e"}).encode(), "idempotency_key"),
    ],
)
def test_invalid_events_are_400_naming_the_problem_and_store_nothing(
    gateway: GatewayProcess, redis_db: redis.Redis, body: bytes, detail: str
) -> None:
    answer = post_once(gateway.port, body)
    assert answer.status == 400
    codes = {"invalid_json", "invalid_payload", "missing_key", "missing_event"}
    assert answer.json()["error"] in codes
    assert detail in str(answer.json()["detail"])
    assert redis_db.dbsize() == 0


def test_wrong_path_and_method_get_404_and_405(gateway: GatewayProcess) -> None:
    assert post_once(gateway.port, seed(), path="/webhooks/other").status == 404
    poster = Poster(gateway.port)
    answer = poster.post(b"", method="GET")
    poster.close()
    assert answer.status == 405
    assert answer.headers["allow"] == "POST"


def no_spool(tmp_path: Path) -> str:
    """Ingest only, and the Redis-outage spool off: outages answer 503
    (test_spool.py covers the spool)."""
    changes = {"forwarder": {"enabled": False}, "store": {"spool": {"enabled": False}}}
    return config_variant(tmp_path, changes, "no-spool.yaml")


def test_redis_down_without_the_spool_gives_503_never_200_and_recovers(
    start_gateway: Callable[..., GatewayProcess],
    redis_server: RedisServer,
    redis_db: redis.Redis,
    tmp_path: Path,
) -> None:
    gateway = start_gateway(config=no_spool(tmp_path))
    assert post_once(gateway.port, with_key("before")).status == 200
    redis_server.stop()
    answers = [post_once(gateway.port, with_key(f"down-{i}")) for i in range(10)]
    assert {a.status for a in answers} == {503}
    assert answers[0].headers["retry-after"] == "5"
    assert answers[0].json()["error"] == "store_unavailable"
    wait_until(lambda: http_status(gateway.admin("/readyz")) == 503, what="readiness to fail")
    assert http_status(gateway.admin("/healthz")) == 200  # liveness never depends on Redis
    redis_server.start()
    wait_until(gateway.ready, what="readiness to recover")
    assert post_once(gateway.port, with_key("down-0")).json()["status"] == "accepted"
    keys = [e[b"key"] for e in queued(redis.Redis(port=redis_server.port))]
    assert keys == [b"before", b"down-0"]


def test_metrics_count_requests_and_resolve_microsecond_acks(gateway: GatewayProcess) -> None:
    post_once(gateway.port, with_key("m-1"))
    post_once(gateway.port, with_key("m-1"))
    post_once(gateway.port, b"{}")
    with socket.create_connection(("127.0.0.1", gateway.admin_port)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        text = RawClient(sock).read_response().body.decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    src = ("source", "inboxcomponents")
    assert samples[("webhook_gateway_requests_total", (("code", "200"), src))] == 2
    assert samples[("webhook_gateway_requests_total", (("code", "400"), src))] == 1
    assert samples[("webhook_gateway_events_admitted_total", (src,))] == 1
    assert samples[("webhook_gateway_duplicates_total", (src,))] == 1
    assert samples[("webhook_gateway_ack_duration_seconds_count", (src,))] == 2
    assert ("webhook_gateway_ack_duration_seconds_bucket", (("le", "2.5e-05"), src)) in samples
    info = (("build", gateway_build.kind()), ("version", "0.1.0"))
    assert samples[("webhook_gateway_build_info", info)] == 1


def test_sigterm_under_load_exits_0_and_every_200_was_queued(
    gateway: GatewayProcess, redis_db: redis.Redis
) -> None:
    acked: list[str] = []
    refused: list[int] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        poster = Poster(gateway.port, timeout=5)
        n = 0
        try:
            while not stop.is_set():
                key = f"w{worker}-{n}"
                n += 1
                answer = poster.post(with_key(key))
                if answer.status == 200:
                    acked.append(key)
                else:
                    refused.append(answer.status)
        except (OSError, http.client.HTTPException):
            return  # the listener closed: the gateway is going away
        finally:
            poster.close()

    threads = [threading.Thread(target=load, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    wait_until(lambda: len(acked) >= 300, what="300 acked requests")
    gateway.signal(signal.SIGTERM)
    assert gateway.wait(20) == 0
    stop.set()
    for t in threads:
        t.join(10)
    queued_keys = {e[b"key"].decode() for e in queued(redis_db)}
    assert set(acked) <= queued_keys
    assert set(refused) <= {503}
    assert '"event":"stopped"' in gateway.logs()


def test_startup_warns_when_redis_settings_risk_events(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    risky = RedisServer("--appendonly", "no", "--maxmemory-policy", "allkeys-lru")
    try:
        gw = start_gateway(STORE_URL=risky.url)
        wait_until(lambda: gw.logs().count("store_durability_risk") >= 2, what="two warnings")
        logs = gw.logs()
        assert "maxmemory-policy is allkeys-lru" in logs
        assert "appendonly is no" in logs
    finally:
        risky.close()


def test_without_the_spool_a_gateway_started_while_redis_is_down_answers_503(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    from tests.support.processes import free_port

    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    gw = start_gateway(wait_ready=False, config=no_spool(tmp_path), STORE_URL=nowhere)
    assert http_status(gw.admin("/readyz")) == 503
    assert post_once(gw.port, with_key("nowhere")).status == 503
    wait_until(lambda: "store_unreachable_at_start" in gw.logs(), what="the startup warning")


def test_without_the_spool_frozen_redis_gives_503_at_the_deadline_and_the_retry_is_not_lost(
    start_gateway: Callable[..., GatewayProcess],
    redis_server: RedisServer,
    redis_db: redis.Redis,
    tmp_path: Path,
) -> None:
    gw = start_gateway(config=no_spool(tmp_path))
    assert post_once(gw.port, with_key("warm")).status == 200
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        answer = post_once(gw.port, with_key("frozen"))
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    assert answer.status == 503
    assert answer.headers["retry-after"] == "5"
    # Redis may still run the command it had buffered when it wakes: then the
    # key is marked AND the event queued (one atomic script). Either way the
    # provider's retry is acked 200 and the event is queued exactly once.
    retry = post_once(gw.port, with_key("frozen"))
    assert retry.status == 200
    assert [e[b"key"] for e in queued(redis_db)] == [b"warm", b"frozen"]


def test_a_key_reused_with_another_body_is_acked_as_duplicate_and_counted(
    gateway: GatewayProcess, redis_db: redis.Redis
) -> None:
    first = with_key("reused")
    second = first.replace(b'"body": "test"', b'"body": "changed"')
    assert first != second
    assert post_once(gateway.port, first).json()["status"] == "accepted"
    answer = post_once(gateway.port, second)
    assert (answer.status, answer.json()["status"]) == (200, "duplicate")
    assert [e[b"body"] for e in queued(redis_db)] == [first]
    with urllib.request.urlopen(gateway.admin("/metrics"), timeout=5) as response:
        metrics = response.read().decode()
    assert 'webhook_gateway_key_conflicts_total{source="inboxcomponents"} 1.0' in metrics
    wait_until(lambda: '"event":"key_conflict"' in gateway.logs(), what="the conflict log line")
