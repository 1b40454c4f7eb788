"""Slowloris: hundreds of trickling connections are cut, real senders stay fast."""

from __future__ import annotations

import selectors
import statistics
import threading
import time

import pytest

from tests.protocol.conftest import Dial, Server, TestLimits
from tests.protocol.wire import HEAD, connect
from tests.support.rawhttp import RawClient, post

SLOW_CLIENTS = 200
LEGIT_REQUESTS = 50


@pytest.fixture
def limits() -> TestLimits:
    return TestLimits(header_timeout=1.0, max_connections=1000)


def trickle_until_cut(clients: list[RawClient], every: float, within: float) -> dict[str, int]:
    """Each client sends one more header byte every `every` s until the server answers
    or closes; how many ended which way ("408", "closed"; "open" if never)."""
    outcomes = {"408": 0, "closed": 0}
    with selectors.DefaultSelector() as selector:
        for client in clients:
            selector.register(client.sock, selectors.EVENT_READ, client)
        give_up = time.monotonic() + within
        while selector.get_map() and time.monotonic() < give_up:
            for key, _ in selector.select(every):
                data = key.data.sock.recv(4096)
                outcomes["408" if data.startswith(b"HTTP/1.1 408 ") else "closed"] += 1
                selector.unregister(key.fileobj)
            for key in list(selector.get_map().values()):
                try:
                    key.data.send(b"a")
                except OSError:  # reset: cut before we read it
                    outcomes["closed"] += 1
                    selector.unregister(key.fileobj)
        outcomes["open"] = len(selector.get_map())
    return outcomes


def send_legit_requests(port: int, latencies: list[float], statuses: list[int]) -> None:
    for i in range(LEGIT_REQUESTS):
        started = time.perf_counter()
        client = connect(port)
        client.send(post("/echo", b'{"n":%d}' % i))
        statuses.append(client.read_response().status)
        latencies.append(time.perf_counter() - started)
        client.close()
        time.sleep(0.03)  # spread over the slowloris' life and its cut


def test_slowloris_is_cut_while_real_requests_stay_fast(server: Server, dial: Dial) -> None:
    slow = [dial() for _ in range(SLOW_CLIENTS)]
    for client in slow:
        client.send(HEAD + b"X-Slow: ")  # a header line that never ends
    latencies: list[float] = []
    statuses: list[int] = []
    legit = threading.Thread(target=send_legit_requests, args=(server.port, latencies, statuses))
    legit.start()
    outcomes = trickle_until_cut(slow, every=0.1, within=15.0)
    legit.join(15)
    median = statistics.median(latencies)
    worst = max(latencies)
    print(f"slowloris {outcomes}; legit median {median * 1e3:.2f} ms, max {worst * 1e3:.2f} ms")
    assert outcomes["open"] == 0
    assert outcomes["408"] + outcomes["closed"] == SLOW_CLIENTS
    assert statuses == [200] * LEGIT_REQUESTS
    assert median < 0.050
    assert server.router.recorded.count((408, "")) == outcomes["408"]
