"""The local spool: acking while Redis is unavailable, and draining back.

Real processes throughout: a redis-server of each test's own (so it can be
stopped, frozen or never started), the gateway, and the recording sink. The
spool file is read directly with sqlite3 to see what it still holds.
"""

from __future__ import annotations

import collections
import re
import signal
import sqlite3
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.support.configs import config_variant
from tests.support.disks import grow, padded, post_until_full, tiny_tmpfs
from tests.support.processes import GatewayProcess, RedisServer, free_port, wait_until
from tests.support.simulator import Simulator
from tests.support.sink import Sink
from tests.support.webhooks import Poster, with_key

pytestmark = pytest.mark.integration

STREAM = "{gw:0}:q:app"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.close()


@pytest.fixture
def spool_gateway(
    own_redis: RedisServer, sink: Sink, tmp_path: Path
) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(store_url: str | None = None, **changes: object) -> GatewayProcess:
        # Retries after 200 ms: a delivery the app refused is tried again soon.
        # A claim whose bookkeeping failed (a full disk) is taken again after
        # 2 s instead of the default 60 s.
        target = {"backoff": {"initial": "200ms", "max": "200ms"}, "timeout": "1s"}
        base = {"targets": {"app": target}, "forwarder": {"visibility_timeout": "2s"}}
        config = config_variant(tmp_path, {**base, **changes})
        env = {"STORE_URL": store_url or own_redis.url, "FORWARD_URL": sink.url}
        gw = GatewayProcess(env, config=config)
        started.append(gw)
        return gw.start()

    yield start
    for gw in started:
        gw.close()


def metric(gw: GatewayProcess, name: str) -> float:
    text = urllib.request.urlopen(gw.admin("/metrics"), timeout=5).read().decode()
    found = re.search(rf"^webhook_gateway_{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def mode(gw: GatewayProcess) -> str:
    text = urllib.request.urlopen(gw.admin("/metrics"), timeout=5).read().decode()
    modes = re.findall(r'^webhook_gateway_store_mode\{mode="(\w+)"\} 1\.0$', text, re.MULTILINE)
    assert len(modes) == 1, [line for line in text.splitlines() if "store_mode{" in line]
    return str(modes[0])


def spool_holds(gw: GatewayProcess) -> tuple[int, int]:
    """(queue rows, dedup markers) left in the gateway's spool file."""
    path = Path(gw.data_dir) / "spool.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
        markers = db.execute("SELECT COUNT(*) FROM markers").fetchone()[0]
    return int(rows), int(markers)


def post_all(gw: GatewayProcess, keys: list[str]) -> list[tuple[int, str]]:
    poster = Poster(gw.port)
    try:
        answers = [poster.post(with_key(k)) for k in keys]
    finally:
        poster.close()
    return [(a.status, str(a.json().get("status", a.json().get("error")))) for a in answers]


Delivered = Callable[[], list[str]]  # keys the app answered 2xx, in order, with repeats


@pytest.fixture
def delivered(sink: Sink) -> Delivered:
    return sink.delivered


def test_redis_down_acks_into_the_spool_delivers_from_it_then_drains_into_redis(
    spool_gateway: Callable[..., GatewayProcess],
    own_redis: RedisServer,
    sink: Sink,
    delivered: Delivered,
) -> None:
    gw = spool_gateway()
    assert mode(gw) == "redis"
    own_redis.stop()

    first = [f"spool-a-{i}" for i in range(10)]
    assert post_all(gw, first) == [(200, "accepted")] * 10
    assert mode(gw) == "spool"
    assert gw.ready()  # readiness stays green while spooling
    wait_until(lambda: set(first) <= set(delivered()), timeout=10, what="spool delivery")
    assert post_all(gw, first[:3]) == [(200, "duplicate")] * 3  # deduplicated locally

    sink.default_status = 503  # the app falls behind: these stay in the spool
    second = [f"spool-b-{i}" for i in range(10)]
    assert post_all(gw, second) == [(200, "accepted")] * 10
    assert metric(gw, "spool_events_total") == 20
    wait_until(lambda: spool_holds(gw)[0] == 10, what="10 undelivered rows in the spool")

    own_redis.start()
    wait_until(lambda: mode(gw) == "redis", timeout=15, what="store_mode back to redis")
    wait_until(lambda: spool_holds(gw) == (0, 0), what="the spool to empty")
    db = redis.Redis(port=own_redis.port)
    # Every key is marked in Redis; only the undelivered ten were enqueued.
    assert len(db.keys("{gw:0}:idem:*")) == 20
    sink.default_status = 200
    wait_until(lambda: set(second) <= set(delivered()), timeout=10, what="drained delivery")
    assert sorted(delivered()) == sorted(first + second)  # nothing delivered twice
    assert post_all(gw, first + second) == [(200, "duplicate")] * 20
    wait_until(lambda: db.xlen(STREAM) == 0, what="the Redis queue to empty")
    assert metric(gw, "spool_depth") == 0


def test_a_gateway_started_while_redis_is_unreachable_starts_in_spool_mode(
    spool_gateway: Callable[..., GatewayProcess], delivered: Delivered
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    gw = spool_gateway(store_url=nowhere)  # start() waits for /readyz 200
    wait_until(lambda: mode(gw) == "spool", what="spool mode after the first probe")
    keys = [f"cold-{i}" for i in range(5)]
    assert post_all(gw, keys) == [(200, "accepted")] * 5
    wait_until(lambda: set(keys) <= set(delivered()), timeout=10, what="spool delivery")
    assert "redis_unavailable_spooling" in gw.logs()


def test_a_full_spool_answers_503_and_takes_events_again_once_space_returns(
    spool_gateway: Callable[..., GatewayProcess],
    own_redis: RedisServer,
    sink: Sink,
    delivered: Delivered,
) -> None:
    gw = spool_gateway(store={"spool": {"max_size": "256KiB"}})
    own_redis.stop()
    sink.default_status = 503  # nothing leaves the spool
    poster = Poster(gw.port)
    try:
        accepted = post_until_full(poster, "full", limit=200)
    finally:
        poster.close()
    assert 10 <= accepted < 40  # 256 KiB of ~8 KiB events, less the schema's pages
    assert gw.healthy()

    sink.default_status = 200  # space returns as the spool delivers
    wait_until(lambda: spool_holds(gw)[0] == 0, timeout=15, what="the spool to deliver")
    assert post_all(gw, ["after-full"]) == [(200, "accepted")]
    wait_until(lambda: "after-full" in delivered(), what="the event after recovery")
    assert sorted(delivered()) == sorted([f"full-{i}" for i in range(accepted)] + ["after-full"])


# =============================================================================
# Fault cases: the provider simulator (InboxComponents' retry and disable
# rules) sends at 40 events/s while Redis is frozen or down for 10 s, longer
# than the provider's whole retry horizon (0.2 + 0.4 + 0.8 + 1.6 + 3.2 s).
# =============================================================================

OUTAGE_SECONDS = 10.0
RATE = 40.0


def report(case: str, sim: Simulator, **numbers: object) -> None:
    """One line of numbers per case (seen with -s)."""
    fields = {**numbers, **{f"sim_{k}": v for k, v in sim.summary().items()}}
    print(f"\nFAULTS {case}: " + " ".join(f"{k}={v}" for k, v in fields.items()))


def run_through_outage(
    gw: GatewayProcess,
    own_redis: RedisServer,
    delivered: Delivered,
    outage: Callable[[], Callable[[], None]],
) -> tuple[Simulator, float, dict[str, int]]:
    """Load for 2 s, the outage for OUTAGE_SECONDS, load for 3 s more; then
    wait until every acked event reached the app. Returns the simulator, the
    seconds from the end of the outage to the spool being empty, and the
    counts of deliveries per key."""
    count = round(RATE * (2 + OUTAGE_SECONDS + 3))
    sim = Simulator(gw.url(), count, rate=RATE).start()
    assert sim.started_at is not None
    wait_until(lambda: len(sim.acked_keys) >= RATE * 2, what="2 s of acked load")
    end_outage = outage()
    spooled_at = time.monotonic()
    wait_until(lambda: mode(gw) == "spool", what="spool mode")
    while time.monotonic() - spooled_at < OUTAGE_SECONDS:  # the outage's length: pacing
        time.sleep(0.2)
    end_outage()
    ended = time.monotonic()
    wait_until(lambda: mode(gw) == "redis", timeout=15, what="store_mode back to redis")
    wait_until(lambda: spool_holds(gw) == (0, 0), timeout=15, what="the spool to empty")
    drained = time.monotonic() - ended
    sim.wait(timeout=60)
    wait_until(lambda: sim.acked_keys <= set(delivered()), timeout=30, what="every acked event")
    counts: dict[str, int] = collections.Counter(delivered())
    return sim, drained, counts


def check_outage(
    case: str, gw: GatewayProcess, sim: Simulator, drained: float, counts: dict[str, int]
) -> None:
    acked = sim.acked_keys
    duplicates = sum(n - 1 for n in counts.values())
    report(
        case,
        sim,
        acked=len(acked),
        delivered=len(counts),
        lost=len(acked - counts.keys()),
        duplicates=duplicates,
        spooled=int(metric(gw, "spool_events_total")),
        drained_within_s=f"{drained:.2f}",
    )
    assert not sim.disabled
    assert acked == set(sim.keys)  # every event acked, none given up
    assert sim.summary()["failed_attempts"] == 0  # the outage is invisible to the provider
    assert metric(gw, "spool_events_total") > RATE * OUTAGE_SECONDS / 2
    # A duplicate needs an admit that timed out in Redis yet ran there, or a
    # delivery whose ack Redis never got: a handful around each transition.
    assert duplicates <= 16


def test_redis_frozen_for_10_s_under_load_spools_and_the_provider_sees_nothing(
    spool_gateway: Callable[..., GatewayProcess], own_redis: RedisServer, delivered: Delivered
) -> None:
    gw = spool_gateway()

    def freeze() -> Callable[[], None]:
        assert own_redis.proc is not None
        own_redis.proc.send_signal(signal.SIGSTOP)
        proc = own_redis.proc
        return lambda: proc.send_signal(signal.SIGCONT)

    try:
        sim, drained, counts = run_through_outage(gw, own_redis, delivered, freeze)
    finally:
        if own_redis.proc is not None:
            own_redis.proc.send_signal(signal.SIGCONT)
    check_outage("redis-frozen-10s", gw, sim, drained, counts)


def test_redis_killed_and_down_for_10_s_under_load_loses_nothing_and_keeps_the_endpoint(
    spool_gateway: Callable[..., GatewayProcess], own_redis: RedisServer, delivered: Delivered
) -> None:
    gw = spool_gateway()

    def kill() -> Callable[[], None]:
        assert own_redis.proc is not None
        own_redis.proc.kill()
        own_redis.proc.wait(5)
        own_redis.proc = None
        return own_redis.start  # AOF on: what Redis held before the kill comes back

    sim, drained, counts = run_through_outage(gw, own_redis, delivered, kill)
    check_outage("redis-down-10s", gw, sim, drained, counts)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    with tiny_tmpfs(tmp_path / "tiny") as where:
        yield where


def test_a_full_disk_under_the_spool_answers_503_without_a_crash_and_recovers_when_space_returns(
    spool_gateway: Callable[..., GatewayProcess],
    own_redis: RedisServer,
    sink: Sink,
    delivered: Delivered,
    tiny_disk: Path,
) -> None:
    gw = spool_gateway(data_dir=str(tiny_disk))  # max_size stays 256 MiB: the disk fills first
    own_redis.stop()
    sink.default_status = 503  # nothing leaves the spool
    poster = Poster(gw.port)
    try:
        accepted = post_until_full(poster, "disk")
        assert gw.healthy()  # no crash
        assert "database or disk is full" in gw.logs()  # the disk, not the size cap
        assert poster.post(padded(with_key("disk-still-full"))).status == 503
        print(f"\nFAULTS disk-full: accepted={accepted} then 503")

        grow(tiny_disk, "8m")
        assert poster.post(padded(with_key("disk-after"))).status == 200  # space returned
    finally:
        poster.close()
    sink.default_status = 200
    wanted = {f"disk-{i}" for i in range(accepted)} | {"disk-after"}
    wait_until(lambda: wanted <= set(delivered()), timeout=15, what="every acked event")
    assert "disk-still-full" not in delivered()


def test_a_spool_file_that_cannot_be_opened_never_takes_the_redis_path_down(
    spool_gateway: Callable[..., GatewayProcess],
    own_redis: RedisServer,
    delivered: Delivered,
    tmp_path: Path,
) -> None:
    data = tmp_path / "broken"
    (data / "spool.db").mkdir(parents=True)  # a directory where the spool file should be
    gw = spool_gateway(data_dir=str(data))
    wait_until(lambda: mode(gw) == "redis", what="redis mode despite the broken spool")
    assert post_all(gw, ["fine-1", "fine-2"]) == [(200, "accepted")] * 2
    wait_until(lambda: {"fine-1", "fine-2"} <= set(delivered()), what="delivery via Redis")
    own_redis.stop()  # now neither path can take an event: 503, never a false 200
    answers = post_all(gw, ["nowhere"])
    assert answers == [(503, "store_unavailable")]
