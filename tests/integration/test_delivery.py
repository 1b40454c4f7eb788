"""Delivery to the app: a real gateway, a real redis-server and a recording sink."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from tests.support.configs import config_variant
from tests.support.processes import GatewayProcess, wait_until
from tests.support.sink import Sink
from tests.support.webhooks import Poster, post_once, seed, with_key
from tests.unit.test_delivery_rules import data_bytes

pytestmark = pytest.mark.integration

STREAM, RETRY, DEAD = "{gw:0}:q:app", "{gw:0}:retry:app", "{gw:0}:dead:app"
FAST_RETRIES = {"FORWARD_BACKOFF_INITIAL": "50ms", "FORWARD_BACKOFF_MAX": "200ms"}


def settled(db: redis.Redis) -> bool:
    """Nothing queued, pending or waiting to retry."""
    if db.xlen(STREAM) or db.zcard(RETRY):
        return False
    return not db.exists(STREAM) or db.xpending(STREAM, "gateway")["pending"] == 0


def test_both_seed_payloads_arrive_as_binary_cloudevents(
    gateway: GatewayProcess, sink: Sink, redis_db: redis.Redis
) -> None:
    for name in ("message.received", "message.sent"):
        assert post_once(gateway.port, seed(name)).status == 200
    sink.wait_for(lambda s: len(s.received()) == 2, what="two deliveries")
    by_type = {r.headers["ce-type"]: r for r in sink.received()}
    for name in ("message.received", "message.sent"):
        request = by_type[f"com.inboxcomponents.{name}"]
        assert request.path == "/events"
        assert request.headers["ce-specversion"] == "1.0"
        assert request.headers["ce-id"] == (
            "ae74038cfaa2ead7095ef0517ead67f58eeca1abeb8dc60fa7a39b3bdfb04793"
        )
        assert request.headers["ce-source"] == "https://app.inboxcomponents.com"
        assert request.headers["ce-time"] == "2025-04-01T13:14:05Z"
        assert request.headers["ce-subject"] == "0195f0b1-5f4c-7bbe-8826-de31472446d0"
        assert request.headers["ce-attempt"] == "1"
        assert request.headers["content-type"] == "application/json"
        assert request.body == data_bytes(seed(name))
    wait_until(lambda: settled(redis_db), what="the queue to empty")


def test_one_key_sent_5_times_then_50_concurrently_arrives_once(
    gateway: GatewayProcess, sink: Sink, redis_db: redis.Redis
) -> None:
    poster = Poster(gateway.port)
    assert [poster.post(with_key("once")).status for _ in range(5)] == [200] * 5
    poster.close()
    with ThreadPoolExecutor(50) as pool:
        statuses = list(
            pool.map(lambda _: post_once(gateway.port, with_key("twice")).status, range(50))
        )
    assert statuses == [200] * 50
    sink.wait_for(lambda s: {"once", "twice"} <= set(s.keys()), what="both keys")
    wait_until(lambda: settled(redis_db), what="the queue to empty")
    assert sink.keys() == {"once": 1, "twice": 1}


def test_500_distinct_events_all_arrive(
    gateway: GatewayProcess, sink: Sink, redis_db: redis.Redis
) -> None:
    def send(worker: int) -> list[int]:
        poster = Poster(gateway.port)
        statuses = [poster.post(with_key(f"d-{worker}-{i}")).status for i in range(50)]
        poster.close()
        return statuses

    with ThreadPoolExecutor(10) as pool:
        assert all(s == 200 for batch in pool.map(send, range(10)) for s in batch)
    sink.wait_for(lambda s: len(s.keys()) == 500, what="500 distinct deliveries")
    wait_until(lambda: settled(redis_db), what="the queue to empty")
    assert set(sink.keys().values()) == {1}


def test_a_500_then_200_is_retried_and_not_attempted_after_the_2xx(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, redis_db: redis.Redis
) -> None:
    gw = start_gateway(**FAST_RETRIES)
    sink.plan("flaky", 500)
    assert post_once(gw.port, with_key("flaky")).status == 200
    sink.wait_for(lambda s: len(s.received("flaky")) == 2, what="the retry")
    wait_until(lambda: settled(redis_db), what="the queue to empty")
    attempts = [r.headers["ce-attempt"] for r in sink.received("flaky")]
    assert attempts == ["1", "2"]
    assert redis_db.xlen(DEAD) == 0


def test_always_500_gets_exactly_max_attempts_then_dead_letter_while_others_flow(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, redis_db: redis.Redis
) -> None:
    gw = start_gateway(FORWARD_MAX_ATTEMPTS="4", **FAST_RETRIES)
    sink.plan("poison", *[500] * 50)
    assert post_once(gw.port, with_key("poison")).status == 200
    for i in range(20):
        assert post_once(gw.port, with_key(f"fine-{i}")).status == 200
    wait_until(lambda: redis_db.xlen(DEAD) == 1, what="the dead letter")
    wait_until(lambda: settled(redis_db), what="the queue to empty")
    assert [r.headers["ce-attempt"] for r in sink.received("poison")] == ["1", "2", "3", "4"]
    assert all(sink.keys()[f"fine-{i}"] == 1 for i in range(20))
    ((_, dead),) = redis_db.xrange(DEAD)
    assert (dead[b"key"], dead[b"status"], dead[b"attempts"]) == (b"poison", b"500", b"4")
    assert dead[b"body"] == with_key("poison")
    metrics = gw_metrics(gw)
    assert 'webhook_gateway_dead_letter_total{target="app"} 1.0' in metrics
    assert "dead_lettered" in gw.logs()


def test_a_4xx_is_dead_lettered_at_once(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, redis_db: redis.Redis
) -> None:
    gw = start_gateway(**FAST_RETRIES)
    sink.plan("rejected", 422)
    assert post_once(gw.port, with_key("rejected")).status == 200
    wait_until(lambda: redis_db.xlen(DEAD) == 1, what="the dead letter")
    assert len(sink.received("rejected")) == 1


def test_429_with_retry_after_2_is_not_retried_sooner(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, redis_db: redis.Redis
) -> None:
    gw = start_gateway(**{**FAST_RETRIES, "FORWARD_BACKOFF_MAX": "10s"})
    sink.plan("throttled", (429, {"Retry-After": "2"}))
    assert post_once(gw.port, with_key("throttled")).status == 200
    sink.wait_for(lambda s: len(s.received("throttled")) == 2, timeout=15, what="the retry")
    first, second = sink.received("throttled")
    assert second.at - first.at >= 2.0


def test_kill_9_under_load_then_restart_delivers_every_acked_event(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, redis_db: redis.Redis
) -> None:
    sink.delay = 0.05  # slower than the load: a backlog is in flight when the kill lands
    gw = start_gateway()
    acked = load_until_killed(gw, lambda n: n >= 400, signal.SIGKILL)
    assert redis_db.xpending(STREAM, "gateway")["pending"] > 0  # claimed, never acked
    gw.proc = None  # already dead: restart on the same ports, same consumer name
    gw.start()
    sink.wait_for(lambda s: set(acked) <= set(s.keys()), timeout=30, what="every acked event")
    wait_until(lambda: settled(redis_db), what="the queue to empty")


def test_two_gateways_with_one_frozen_still_deliver_everything(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, redis_db: redis.Redis,
    tmp_path: Path,
) -> None:  # fmt: skip
    def variant(name: str) -> str:
        fwd = {"visibility_timeout": "2s", "consumer": name}
        changes = {"forwarder": fwd, "targets": {"app": {"timeout": "1s"}}}
        return config_variant(tmp_path, changes, f"{name}.yaml")

    sink.delay = 0.5  # deliveries stay in flight long enough to freeze one mid-way
    a = start_gateway(config=variant("gw-a"))
    b = start_gateway(config=variant("gw-b"))
    keys = [f"f-{i}" for i in range(200)]
    for i, key in enumerate(keys[:100]):
        assert post_once((a if i % 2 else b).port, with_key(key)).status == 200
    wait_until(lambda: frozen_with(redis_db, "gw-a") != [], what="gw-a to hold deliveries")
    assert a.proc is not None
    a.proc.send_signal(signal.SIGSTOP)
    try:
        held = frozen_with(redis_db, "gw-a")
        assert held  # claimed by the frozen gateway, not acked
        for key in keys[100:]:
            assert post_once(b.port, with_key(key)).status == 200
        sink.wait_for(lambda s: set(keys) <= set(s.keys()), timeout=30, what="all 200 events")
    finally:
        a.proc.send_signal(signal.SIGCONT)


def frozen_with(db: redis.Redis, consumer: str) -> list[bytes]:
    """Entry ids a consumer has claimed and not acked."""
    pending = db.xpending_range(STREAM, "gateway", "-", "+", 1000, consumer)
    return [p["message_id"] for p in pending]


def test_sigterm_lets_in_flight_deliveries_finish(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, redis_db: redis.Redis
) -> None:
    sink.delay = 0.5
    gw = start_gateway()
    for i in range(5):
        assert post_once(gw.port, with_key(f"t-{i}")).status == 200
    sink.wait_for(lambda s: len(s.received()) == 5, what="five deliveries in flight")
    gw.signal(signal.SIGTERM)
    assert gw.wait(20) == 0
    wait_until(lambda: settled(redis_db), what="the in-flight deliveries to be acked")


def test_at_sigterm_entries_claimed_ahead_are_delivered_within_the_grace(
    start_gateway: Callable[..., GatewayProcess],
    sink: Sink,
    redis_db: redis.Redis,
    tmp_path: Path,
) -> None:
    # concurrency 2: a claim budget of 3 (PREFETCH 0.5), so with both lanes busy
    # one more entry waits in memory, and the other three stay unclaimed.
    sink.delay = 0.5
    config = config_variant(tmp_path, {"targets": {"app": {"concurrency": 2}}})
    gw = start_gateway(config=config)
    for i in range(6):
        assert post_once(gw.port, with_key(f"p-{i}")).status == 200
    sink.wait_for(lambda s: len(s.received()) == 2, what="both lanes busy")
    wait_until(
        lambda: redis_db.xpending(STREAM, "gateway")["pending"] == 3, what="one claimed ahead"
    )
    gw.signal(signal.SIGTERM)
    assert gw.wait(20) == 0
    assert len(sink.received()) == 3  # the two in flight, then the one claimed ahead
    assert redis_db.xpending(STREAM, "gateway")["pending"] == 0  # all three acked
    assert redis_db.xlen(STREAM) == 3  # the rest still queued for the next start


def test_a_delivery_unanswered_when_the_grace_ends_stays_pending_for_the_next_start(
    start_gateway: Callable[..., GatewayProcess],
    sink: Sink,
    redis_db: redis.Redis,
    tmp_path: Path,
) -> None:
    # The app takes 30 s to answer; the grace is 300 ms. At its end the gateway
    # lets go: no ack, no retry, no dead letter. The entries stay pending under
    # its consumer name, delivered again after the restart (at least once).
    sink.delay = 30.0
    config = config_variant(tmp_path, {"shutdown_grace": "300ms"})
    gw = start_gateway(config=config)
    for i in range(2):
        assert post_once(gw.port, with_key(f"g-{i}")).status == 200
    sink.wait_for(lambda s: len(s.received()) == 2, what="both deliveries in flight")
    gw.signal(signal.SIGTERM)
    assert gw.wait(20) == 0
    assert redis_db.xpending(STREAM, "gateway")["pending"] == 2
    assert redis_db.zcard(RETRY) == 0
    assert redis_db.xlen(DEAD) == 0


def load_until_killed(gw: GatewayProcess, enough: Callable[[int], bool], signum: int) -> list[str]:
    acked: list[str] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        poster = Poster(gw.port, timeout=5)
        n = 0
        try:
            while not stop.is_set():
                key = f"k{worker}-{n}"
                n += 1
                if poster.post(with_key(key)).status == 200:
                    acked.append(key)
        except Exception:
            return  # the gateway died under us
        finally:
            poster.close()

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: enough(len(acked)), what="load")
    gw.signal(signum)
    assert gw.proc is not None
    gw.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(10)
    return list(acked)


def gw_metrics(gw: GatewayProcess) -> str:
    import urllib.request

    with urllib.request.urlopen(gw.admin("/metrics"), timeout=5) as response:
        return str(response.read().decode())


def test_fan_out_delivers_and_retries_per_target(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, redis_db: redis.Redis,
    tmp_path: Path,
) -> None:  # fmt: skip
    audit = {"url": sink.url + "/audit", "format": "raw", "backoff": {"initial": "50ms"}}
    changes = {
        "targets": {"audit": audit},
        "routes": [
            {"source": "inboxcomponents", "events": ["message.*"], "targets": ["app", "audit"]}
        ],
    }
    gw = start_gateway(config=config_variant(tmp_path, changes))
    sink.plan("fan", 200, 503)  # the first request (either target) passes, the second fails once
    assert post_once(gw.port, with_key("fan")).status == 200
    sink.wait_for(lambda s: len(s.received("fan")) == 3, what="two deliveries and one retry")
    paths = sorted(r.path for r in sink.received("fan"))
    assert paths.count("/events") + paths.count("/events/audit") == 3
    assert {"/events", "/events/audit"} <= set(paths)
    assert redis_db.xlen("{gw:0}:dead:app") == redis_db.xlen("{gw:0}:dead:audit") == 0
    raw = next(r for r in sink.received("fan") if r.path == "/events/audit")
    assert raw.body == with_key("fan")  # raw format: the provider's body byte for byte


def test_unrouted_events_are_acked_counted_and_dropped(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, redis_db: redis.Redis,
    tmp_path: Path,
) -> None:  # fmt: skip
    changes = {
        "routes": [{"source": "inboxcomponents", "events": ["message.sent"], "targets": ["app"]}]
    }
    gw = start_gateway(config=config_variant(tmp_path, changes))
    assert post_once(gw.port, with_key("lost-cause")).json()["status"] == "accepted"
    assert post_once(gw.port, with_key("kept", "message.sent")).status == 200
    sink.wait_for(lambda s: s.keys()["kept"] == 1, what="the routed event")
    assert sink.keys()["lost-cause"] == 0
    assert 'webhook_gateway_unrouted_total{source="inboxcomponents"} 1.0' in gw_metrics(gw)


def test_delivery_resumes_when_redis_loses_the_consumer_group(
    gateway: GatewayProcess, sink: Sink, redis_db: redis.Redis
) -> None:
    assert post_once(gateway.port, with_key("before-flush")).status == 200
    sink.wait_for(lambda s: s.keys()["before-flush"] == 1, what="the first delivery")
    redis_db.flushall()  # as a Redis restarted without persistence would be
    assert post_once(gateway.port, with_key("after-flush")).status == 200
    sink.wait_for(lambda s: s.keys()["after-flush"] == 1, what="delivery after the flush")


def test_queue_metrics_show_the_backlog_while_the_app_is_down(
    gateway: GatewayProcess, sink: Sink, redis_db: redis.Redis
) -> None:
    sink.default_status = 503
    for i in range(3):
        assert post_once(gateway.port, with_key(f"backlog-{i}")).status == 200

    def depth() -> float:
        for line in gw_metrics(gateway).splitlines():
            if line.startswith('webhook_gateway_queue_depth{target="app"}'):
                return float(line.split()[-1])
        return -1.0

    wait_until(lambda: depth() == 3.0, what="queue_depth 3")
    assert 'webhook_gateway_forward_attempts_total{outcome="http_error",target="app"}' in (
        gw_metrics(gateway)
    )
    sink.default_status = 200
    sink.wait_for(lambda s: all(s.keys()[f"backlog-{i}"] >= 1 for i in range(3)), what="recovery")
    wait_until(lambda: depth() == 0.0, what="queue_depth 0")
