"""The local spool: acking while Redis is unavailable, and draining back.

Real processes throughout: a redis-server of each test's own (so it can be
stopped, frozen or never started), the gateway, and the recording sink. The
spool file is read directly with sqlite3 to see what it still holds.
"""

from __future__ import annotations

import re
import sqlite3
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.support.configs import config_variant
from tests.support.processes import GatewayProcess, RedisServer, free_port, wait_until
from tests.support.sink import Recorded, Sink
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
        config = config_variant(
            tmp_path,
            {"targets": {"app": {"backoff": {"initial": "200ms", "max": "200ms"}}}, **changes},
        )
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
    modes = [m for m in ("redis", "spool", "draining") if metric(gw, f'store_mode{{mode="{m}"}}')]
    assert len(modes) == 1, modes
    return modes[0]


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


class Delivered:
    """Keys the app (the sink) answered 2xx, in order, with repeats."""

    def __init__(self, sink: Sink) -> None:
        self.keys: list[str] = []
        answer = sink.answer_for

        def answer_for(request: Recorded) -> tuple[int, dict[str, str], float]:
            status, headers, delay = answer(request)
            if 200 <= status < 300:
                self.keys.append(request.key)  # list.append is atomic under the GIL
            return status, headers, delay

        sink.answer_for = answer_for  # type: ignore[method-assign]

    def __call__(self) -> list[str]:
        return list(self.keys)


@pytest.fixture
def delivered(sink: Sink) -> Delivered:
    return Delivered(sink)


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
    assert mode(gw) == "spool"
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
    padding = "x" * 8000
    answers: list[tuple[int, str]] = []
    poster = Poster(gw.port)
    try:
        for i in range(200):
            pad = f'"pad": "{padding}", "data": {{'.encode()
            body = with_key(f"full-{i}").replace(b'"data": {', pad)
            answer = poster.post(body)
            answers.append((answer.status, answer.headers.get("retry-after", "")))
            if answer.status == 503:
                assert answer.json()["error"] == "store_unavailable"
                break
    finally:
        poster.close()
    statuses = [s for s, _ in answers]
    assert statuses[-1] == 503, "the spool never filled"
    assert set(statuses[:-1]) == {200}
    assert answers[-1][1]  # Retry-After
    accepted = len(statuses) - 1
    assert 10 <= accepted < 40  # 256 KiB of ~8 KiB events, less the schema's pages
    assert gw.healthy()

    sink.default_status = 200  # space returns as the spool delivers
    wait_until(lambda: spool_holds(gw)[0] == 0, timeout=15, what="the spool to deliver")
    assert post_all(gw, ["after-full"]) == [(200, "accepted")]
    wait_until(lambda: "after-full" in delivered(), what="the event after recovery")
    assert sorted(delivered()) == sorted([f"full-{i}" for i in range(accepted)] + ["after-full"])
