"""`workers: 2`: a supervisor and two gateway processes on one SO_REUSEPORT port,
with a real redis-server and the recording sink."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from tests.support.processes import (
    GatewayProcess,
    RedisServer,
    assert_a_taken_port_fails_the_start,
    failed_start,
    free_port,
    wait_until,
)
from tests.support.queues import RedisQueues
from tests.support.sink import Sink
from tests.support.webhooks import post_once, seed, with_key
from tests.support.workers import events, workers

pytestmark = pytest.mark.integration

STREAM = "{gw:0}:q:app"
TWO = {"GATEWAY_WORKERS": "2"}


def unix_get(path: str, target: str) -> str:
    """GET from a worker's private admin listener."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{series} not in /metrics")


def metrics(gw: GatewayProcess) -> str:
    import urllib.request

    with urllib.request.urlopen(gw.admin("/metrics"), timeout=5) as response:
        return str(response.read().decode())


def readyz(gw: GatewayProcess) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(gw.admin("/readyz"), timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def settled(db: redis.Redis) -> bool:
    """Nothing queued, pending or waiting to retry (tests/support/queues.py)."""
    return RedisQueues(db, "").settled()


def pending_of(db: redis.Redis, consumer: str) -> int:
    """Entries `consumer` has claimed and not acked (0 before the group exists)."""
    try:
        return len(db.xpending_range(STREAM, "gateway", "-", "+", 1000, consumer))
    except redis.ResponseError:  # NOGROUP: no forwarder has started yet
        return 0


REQUESTS = 'webhook_gateway_requests_total{code="200",source="inboxcomponents"}'
ADMITTED = 'webhook_gateway_events_admitted_total{source="inboxcomponents"}'
DUPLICATES = 'webhook_gateway_duplicates_total{source="inboxcomponents"}'


def test_two_workers_share_the_load_deliver_once_and_sum_their_metrics(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, redis_db: redis.Redis
) -> None:
    gw = start_gateway(**TWO)
    keys = [f"w-{i}" for i in range(200)]
    bodies = [seed("message.received"), seed("message.sent")] + [with_key(k) for k in keys]
    repeats = bodies[:2] + [with_key(k) for k in keys[:40]]  # provider retries
    with ThreadPoolExecutor(16) as pool:  # a new connection per request: both workers get some
        first = [a.json()["status"] for a in pool.map(lambda b: post_once(gw.port, b), bodies)]
        again = [a.json()["status"] for a in pool.map(lambda b: post_once(gw.port, b), repeats)]
    assert first == ["accepted"] * len(bodies)
    assert again == ["duplicate"] * len(repeats)

    seed_key = json.loads(seed())["idempotency_key"]
    sink.wait_for(lambda s: set(keys) <= set(s.keys()), what="every event at the app")
    wait_until(lambda: settled(redis_db), what="the queue to empty")
    assert sink.keys() == {seed_key: 2, **dict.fromkeys(keys, 1)}  # the two seeds differ in type

    text = metrics(gw)
    assert sample(text, REQUESTS) == len(bodies) + len(repeats)
    assert sample(text, ADMITTED) == len(bodies)
    assert sample(text, DUPLICATES) == len(repeats)
    delivered = 'webhook_gateway_forward_attempts_total{outcome="delivered",target="app"}'
    assert sample(text, delivered) == len(bodies)
    assert sample(text, 'webhook_gateway_store_mode{mode="redis",worker="1"}') == 1.0
    assert sample(text, 'webhook_gateway_worker_restarts_total{worker="0"}') == 0.0
    assert 'process_resident_memory_bytes{worker="supervisor"}' in text
    assert text.count("webhook_gateway_build_info{") == 1

    # Each worker served a share, and the shares add up to the sum.
    running = workers(gw)
    assert sorted(running) == [0, 1]
    shares = [sample(unix_get(w.admin_socket, "/metrics"), REQUESTS) for w in running.values()]
    assert all(share > 0 for share in shares), shares
    assert sum(shares) == len(bodies) + len(repeats)

    host = socket.gethostname().lower()
    consumers = {c["name"].decode() for c in redis_db.xinfo_consumers(STREAM, "gateway")}
    assert consumers == {f"{host}-w0", f"{host}-w1"}

    # /readyz asks every worker: a frozen one makes the gateway unready.
    os.kill(running[0].pid, signal.SIGSTOP)
    try:
        wait_until(lambda: readyz(gw)[0] == 503, what="/readyz 503 with worker 0 frozen")
        assert "worker 0" in readyz(gw)[1]
    finally:
        os.kill(running[0].pid, signal.SIGCONT)
    wait_until(lambda: readyz(gw)[0] == 200, what="/readyz 200 again")


def test_sigterm_drains_every_worker_and_exits_0(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, redis_db: redis.Redis
) -> None:
    sink.delay = 0.3  # deliveries are in flight when the signal lands
    gw = start_gateway(**TWO)
    keys = [f"t-{i}" for i in range(40)]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda k: post_once(gw.port, with_key(k)).status, keys))
    assert statuses == [200] * len(keys)
    sink.wait_for(lambda s: len(s.received()) >= 4, what="deliveries in flight")
    gw.signal(signal.SIGTERM)
    assert gw.wait(30) == 0
    logs = gw.logs()
    assert logs.count('"event":"stopped"') == 3  # both workers, then the supervisor
    assert '"workers":{"0":0,"1":0}' in logs
    assert "Traceback" not in logs
    # What was in flight was acked; the rest waits in Redis for the next start.
    assert redis_db.xpending(STREAM, "gateway")["pending"] == 0
    gw.proc = None
    sink.delay = 0.0
    gw.start()
    sink.wait_for(lambda s: set(keys) <= set(s.keys()), what="every acked event")
    wait_until(lambda: settled(redis_db), what="the queue to empty")
    assert set(sink.keys().values()) == {1}


def test_a_killed_worker_is_restarted_and_resumes_its_own_deliveries(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, redis_db: redis.Redis
) -> None:
    sink.delay = 0.2  # slower than the load: worker 1 holds deliveries when it is killed
    gw = start_gateway(**TWO)
    victim = workers(gw)[1]
    consumer = f"{socket.gethostname().lower()}-w1"
    acked: list[str] = []
    stop = threading.Event()

    def load(thread: int) -> None:
        n = 0
        while not stop.is_set():
            key = f"k{thread}-{n}"
            n += 1
            try:
                if post_once(gw.port, with_key(key)).status == 200:
                    acked.append(key)
            except OSError:
                pass  # a connection the killed worker had accepted

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: pending_of(redis_db, consumer) >= 5, what="worker 1 holding events")
        os.kill(victim.pid, signal.SIGKILL)
        wait_until(lambda: workers(gw)[1].pid != victim.pid, what="worker 1 restarted")
        wait_until(lambda: len(acked) >= 300, what="load on the restarted gateway")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    exits = [(e["worker"], e["exit"]) for e in events(gw, "worker_exited")]
    assert exits == [(1, "signal SIGKILL")]
    sink.delay = 0.0
    # Within the test: far sooner than visibility_timeout (60 s), so worker 1
    # resumed its own pending deliveries (another consumer could not have).
    sink.wait_for(lambda s: set(acked) <= set(s.keys()), what="every acked event")
    wait_until(lambda: settled(redis_db), what="the queue to empty")
    text = metrics(gw)
    assert sample(text, 'webhook_gateway_worker_restarts_total{worker="1"}') == 1.0
    assert sample(text, REQUESTS) >= len(acked)  # the killed worker's requests still count
    assert readyz(gw)[0] == 200


def test_workers_with_the_sqlite_store_are_refused() -> None:
    result = failed_start({**TWO, "STORE_URL": "sqlite:///data/never.db"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "workers: the SQLite store supports one process only" in lines[0]
    assert result.stdout == ""


def test_a_taken_port_fails_the_start_with_exit_1(redis_server: RedisServer) -> None:
    stdout = assert_a_taken_port_fails_the_start({**TWO, "STORE_URL": redis_server.url})
    assert "worker_started" not in stdout


def test_a_worker_that_cannot_start_stops_the_gateway_with_exit_1(
    redis_server: RedisServer,
) -> None:
    result = failed_start(
        {
            **TWO,
            "STORE_URL": redis_server.url,
            "GATEWAY_PORT": str(free_port()),
            "GATEWAY_ADMIN_PORT": str(free_port()),
            "GATEWAY_DATA_DIR": "/dev/null/data",  # no spool file can be made there
        }
    )
    assert result.returncode == 1
    assert '"event":"cannot_start"' in result.stdout
    assert '"event":"worker_failed_to_start"' in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
