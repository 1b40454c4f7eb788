"""Shared fixtures: a real redis-server per session, gateways per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from tests.support.processes import CLOSED_TAILS, RUNNING, GatewayProcess, RedisServer
from tests.support.secrecy import leaks
from tests.support.sink import Sink


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report carries the log tail of each gateway it started: those
    still running, and those it closed already. A failure seen only in CI can be read
    there (the data dir is gone after)."""
    if call.when == "setup":
        CLOSED_TAILS.clear()
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        tails = [*CLOSED_TAILS, *((gw.port, gw.log_tail()) for gw in RUNNING)]
        for port, tail in tails:
            report.sections.append((f"gateway on port {port}: last log lines", tail))


@pytest.fixture(scope="session", autouse=True)
def logs_hold_no_secrets() -> Iterator[None]:
    """Across the whole session, no gateway log may contain a secret, signature
    or Authorization value that a test sent."""
    yield
    found = leaks()
    if found:
        pytest.fail(f"gateway logs contain {len(found)} secret value(s), e.g. {found[0][:6]}...")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.close()


@pytest.fixture
def redis_db(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A synchronous client on an emptied database, for assertions."""
    if not redis_server.answers():  # a test stopped it: bring it back for the next one
        redis_server.start()
    client = redis.Redis(port=redis_server.port)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    """The app behind the gateway: a recording HTTP server on a free port."""
    app = Sink()
    yield app
    app.close()


@pytest.fixture
def start_gateway(
    redis_server: RedisServer, redis_db: redis.Redis, sink: Sink
) -> Iterator[Callable[..., GatewayProcess]]:
    """Start gateways on free ports against the session's Redis, forwarding to the
    sink; all stopped at the end."""
    started: list[GatewayProcess] = []

    def start(
        wait_ready: bool = True, config: str = "config/gateway.yaml", **env: str
    ) -> GatewayProcess:
        base = {"STORE_URL": redis_server.url, "FORWARD_URL": sink.url, "LOG_LEVEL": "info"}
        gw = GatewayProcess({**base, **env}, config=config)
        started.append(gw)
        return gw.start(wait_ready=wait_ready)

    yield start
    for gw in started:
        gw.close()


@pytest.fixture
def gateway(start_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    return start_gateway()
