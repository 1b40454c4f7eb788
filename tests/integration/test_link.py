"""gateway/store/link.py, the pipelined RESP connection, against real redis-servers."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.store.link import Link, LinkSettings, reply_error
from gateway.store.resp import command
from tests.support.processes import RedisServer, free_port

pytestmark = pytest.mark.integration

T = TypeVar("T")


def link_to(url: str, timeout: float = 2.0) -> Link:
    settings = LinkSettings.from_url(url, connect_timeout=1.0, timeout=timeout)
    assert settings is not None
    return Link(settings)


def run(url: str, scenario: Callable[[Link], Awaitable[T]], timeout: float = 2.0) -> T:
    async def main() -> T:
        link = link_to(url, timeout)
        try:
            return await scenario(link)
        finally:
            link.close()

    return asyncio.run(main())


def call(link: Link, *args: str | int, within: float | None = None) -> Awaitable[Any]:
    return link.call(command(args), within)


async def ping_refused(link: Link) -> str:
    """The ConnectionError's text of a PING that could not be made ("answered" if it was)."""
    try:
        await call(link, "PING")
    except RedisConnectionError as exc:
        return str(exc)
    return "answered"


def test_concurrent_callers_share_one_connection_and_each_gets_its_own_reply(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    async def scenario(link: Link) -> tuple[list[Any], set[Any]]:
        echoes = await asyncio.gather(*(call(link, "ECHO", f"m{n}") for n in range(300)))
        ids = {await call(link, "CLIENT", "ID") for _ in range(3)}
        return echoes, ids

    echoes, ids = run(redis_server.url, scenario)
    assert echoes == [f"m{n}".encode() for n in range(300)]
    assert len(ids) == 1  # all on one connection


def test_error_replies_are_redis_py_errors_and_the_connection_stays_usable(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    redis_db.set("text", "x")

    async def scenario(link: Link) -> list[Any]:
        found: list[Any] = []
        for args in (("EVALSHA", "0" * 40, 0), ("LPUSH", "text", "y")):
            try:
                await call(link, *args)
            except ResponseError as exc:
                found.append(type(exc))
        found.append(await call(link, "GET", "text"))
        return found

    assert run(redis_server.url, scenario) == [NoScriptError, ResponseError, b"x"]
    assert type(reply_error("LOADING Redis is loading")).__name__ == "BusyLoadingError"


def test_a_caller_that_gives_up_leaves_the_next_reply_to_the_next_caller(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    async def scenario(link: Link) -> tuple[Any, Any, Any]:
        first = await call(link, "CLIENT", "ID")
        blocked = asyncio.ensure_future(call(link, "BLPOP", "nothing", "0.3"))
        echo = asyncio.ensure_future(call(link, "ECHO", "after"))
        await asyncio.sleep(0)  # both written
        blocked.cancel()
        return first, await echo, await call(link, "CLIENT", "ID")

    first, echo, last = run(redis_server.url, scenario)
    assert echo == b"after"  # not BLPOP's nil, which came first and was dropped
    assert first == last  # the cancellation did not cost the connection


def test_no_reply_in_time_drops_the_connection_and_the_next_call_reconnects(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    async def scenario(link: Link) -> tuple[Any, str, Any, Any]:
        first = await call(link, "CLIENT", "ID")
        queued_behind = asyncio.ensure_future(call(link, "ECHO", "behind"))
        try:
            await call(link, "BLPOP", "nothing", "2", within=0.2)
            error = "none"
        except RedisTimeoutError:
            error = "timeout"
        # The call behind the missing reply fails too: its reply cannot be matched.
        behind: Any = await asyncio.gather(queued_behind, return_exceptions=True)
        return first, error, type(behind[0]).__name__, await call(link, "CLIENT", "ID")

    first, error, behind, last = run(redis_server.url, scenario)
    assert error == "timeout"
    assert behind == "TimeoutError"
    assert last != first


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.close()


def test_a_restarted_redis_fails_the_call_in_flight_and_the_next_call_reconnects(
    own_redis: RedisServer,
) -> None:
    async def scenario(link: Link) -> tuple[Any, str, Any]:
        before = await call(link, "SET", "k", "v")
        await asyncio.to_thread(own_redis.stop)
        try:
            await call(link, "GET", "k")
            failed = "no"
        except RedisConnectionError:
            failed = "connection error"
        await asyncio.to_thread(own_redis.start)  # AOF on: k survives
        return before, failed, await call(link, "GET", "k")

    assert run(own_redis.url, scenario) == (b"OK", "connection error", b"v")


def test_nothing_listening_is_a_connection_error_naming_the_address() -> None:
    port = free_port()
    assert f"127.0.0.1:{port}" in run(f"redis://127.0.0.1:{port}/0", ping_refused)


def test_password_and_database_from_the_url_are_used_on_every_connection() -> None:
    server = RedisServer("--requirepass", "s3cret")
    try:
        url = f"redis://:s3cret@127.0.0.1:{server.port}/3"
        assert run(url, lambda link: call(link, "SET", "where", "db3")) == b"OK"
        check = redis.Redis(port=server.port, password="s3cret", db=3)
        assert check.get("where") == b"db3"
        check.close()
        refused = run(f"redis://:wrong@127.0.0.1:{server.port}/0", ping_refused)
        assert refused.startswith(f"connect to 127.0.0.1:{server.port}:")
        assert "WRONGPASS" in refused
    finally:
        server.close()


def test_a_unix_socket_url_is_spoken_to_over_the_socket() -> None:
    path = Path(tempfile.mkdtemp(prefix="gw-sock-")) / "redis.sock"
    server = RedisServer("--unixsocket", str(path), "--unixsocketperm", "700")
    try:
        reply = run(f"unix://{path}?db=2", lambda link: call(link, "SET", "via", "socket"))
        assert reply == b"OK"
        assert redis.Redis(unix_socket_path=str(path), db=2).get("via") == b"socket"
    finally:
        server.close()


def test_tls_urls_are_left_to_redis_py() -> None:
    assert LinkSettings.from_url("rediss://127.0.0.1:6380/0", 1.0, 1.0) is None
    assert LinkSettings.from_url("redis://127.0.0.1:6380/0", 1.0, 1.0) is not None
